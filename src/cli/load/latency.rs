//! A TCP relay in front of the database that holds every chunk for a while each way: the load
//! benchmarks' database "across a network" (`--pg-rtt-ms`), where each round trip a node's
//! writer waits for costs what it would between machines, rather than the loopback's few
//! microseconds. The bytes pass through untouched (TLS end to end).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Starts the relay on the loopback for the server `url` names, adding `rtt` to each round
/// trip (half each way); `url` with its port changed to the relay's (its host kept, so that
/// the server's certificate is still checked against it). The server must be on this machine
/// (`localhost` or `127.0.0.1`, the relay's own address), and the URL plain
/// (`postgres://USER@HOST[:PORT]/DATABASE`, no query). Plain threads, each sleeping until its
/// chunk is due: an idle machine wakes them within tens of microseconds (a busy one later,
/// and their work counts in the CPU the benchmark reports), where tokio's timer rounds each
/// hold up to the next millisecond (which made `1` nearer 3).
pub fn start(url: &str, rtt: Duration) -> anyhow::Result<String> {
    let (scheme, rest) = url.split_once("://").context("--pg-url is not a URL")?;
    if rest.contains('?') {
        anyhow::bail!("--pg-rtt-ms needs a --pg-url without a query (?...)");
    }
    let (base, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, hostport) = base.rsplit_once('@').unwrap_or(("", base));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().context("--pg-url's port")?),
        None => (hostport, 5432),
    };
    if !matches!(host, "localhost" | "127.0.0.1") {
        anyhow::bail!(
            "--pg-rtt-ms needs the database on this machine (--pg-url host localhost or 127.0.0.1), where the relay listens"
        );
    }
    let upstream = ("127.0.0.1".to_owned(), port);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let relay_port = listener.local_addr()?.port();
    let one_way = rtt / 2;
    std::thread::Builder::new()
        .name("pg-relay".into())
        .spawn(move || {
            for down in listener.incoming() {
                let Ok(down) = down else {
                    // Out of descriptors, say: wait rather than spin.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let upstream = upstream.clone();
                let _ = std::thread::Builder::new()
                    .name("pg-relay-conn".into())
                    .spawn(move || relay(down, &upstream, one_way));
            }
        })?;
    let at = if user.is_empty() {
        format!("{host}:{relay_port}")
    } else {
        format!("{user}@{host}:{relay_port}")
    };
    Ok(format!("{scheme}://{at}/{path}"))
}

/// Relays one connection both ways, each held `delay`.
fn relay(down: TcpStream, upstream: &(String, u16), delay: Duration) {
    let Ok(up) = TcpStream::connect((upstream.0.as_str(), upstream.1)) else {
        return;
    };
    let _ = (down.set_nodelay(true), up.set_nodelay(true));
    let (Ok(down2), Ok(up2)) = (down.try_clone(), up.try_clone()) else {
        return;
    };
    let Ok(there) = std::thread::Builder::new().spawn(move || delayed(down, up, delay)) else {
        return;
    };
    delayed(up2, down2, delay);
    let _ = there.join();
}

/// Copies `from` to `to`, each chunk written `delay` after it was read (in order; the reader
/// goes on meanwhile, as a network's wire does).
fn delayed(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    // Bounded, so that a side that stops reading holds the other up, as over a network.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Instant, Vec<u8>)>(256);
    let Ok(writer) = std::thread::Builder::new().spawn(move || {
        while let Ok((due, bytes)) = rx.recv() {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    }) else {
        return;
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_relay_keeps_the_host_and_changes_the_port() {
        let url = super::start(
            "postgres://postern@localhost:1/postern",
            std::time::Duration::from_millis(1),
        )
        .unwrap();
        assert!(url.starts_with("postgres://postern@localhost:"), "{url}");
        assert!(url.ends_with("/postern"), "{url}");
        assert!(!url.contains(":1/"), "{url}");
        // What it cannot relay is refused, not relayed wrongly.
        let ms = std::time::Duration::from_millis(1);
        assert!(super::start("postgres://u@db.example.org/db", ms).is_err());
        assert!(super::start("postgres://u@localhost:5432/db?sslmode=require", ms).is_err());
        assert!(super::start("postgres://u@localhost:x/db", ms).is_err());
    }

    #[tokio::test]
    async fn bytes_pass_through_held_for_the_round_trip() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let rtt = std::time::Duration::from_millis(40);
        let url = super::start(&format!("postgres://u@127.0.0.1:{port}/db"), rtt).unwrap();
        let relay: u16 = url
            .rsplit_once(':')
            .unwrap()
            .1
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", relay))
            .await
            .unwrap();
        let start = std::time::Instant::now();
        c.write_all(b"ping").await.unwrap();
        let mut back = [0u8; 4];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"ping");
        assert!(start.elapsed() >= rtt, "{:?}", start.elapsed());
    }
}
