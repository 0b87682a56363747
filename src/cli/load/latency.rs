//! A TCP relay in front of the database that holds every chunk for a while each way: the load
//! benchmarks' database "across a network" (`--pg-rtt-ms`), where each round trip a node's
//! writer waits for costs what it would between machines, rather than the loopback's few
//! microseconds. The bytes pass through untouched (TLS end to end).

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Starts the relay on the loopback for the server `url` names, adding `rtt` to each round
/// trip (half each way); `url` with its port changed to the relay's (its host kept, so that
/// the server's certificate is still checked against it).
pub async fn start(url: &str, rtt: Duration) -> anyhow::Result<String> {
    let (scheme, rest) = url.split_once("://").context("--pg-url is not a URL")?;
    let (base, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, hostport) = base.rsplit_once('@').map_or(("", base), |(u, h)| (u, h));
    // `host`, `host:port`, `[v6]` or `[v6]:port`.
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !hostport.ends_with(']') => {
            (h, p.parse::<u16>().context("--pg-url's port")?)
        }
        _ => (hostport, 5432),
    };
    let upstream = (host.trim_matches(['[', ']']).to_owned(), port);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let relay_port = listener.local_addr()?.port();
    let one_way = rtt / 2;
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(up) = TcpStream::connect((upstream.0.as_str(), upstream.1)).await {
                    let _ = (down.set_nodelay(true), up.set_nodelay(true));
                    let (down_r, down_w) = down.into_split();
                    let (up_r, up_w) = up.into_split();
                    tokio::join!(
                        delayed(down_r, up_w, one_way),
                        delayed(up_r, down_w, one_way)
                    );
                }
            });
        }
    });
    let at = if user.is_empty() {
        format!("{host}:{relay_port}")
    } else {
        format!("{user}@{host}:{relay_port}")
    };
    Ok(format!("{scheme}://{at}/{path}"))
}

/// Copies `from` to `to`, each chunk written `delay` after it was read (in order; the reader
/// goes on meanwhile, as a network's wire does).
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let due = tokio::time::Instant::now() + delay;
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_relay_keeps_the_host_and_changes_the_port() {
        let url = super::start(
            "postgres://postern@localhost:55432/postern",
            std::time::Duration::from_millis(1),
        )
        .await
        .unwrap();
        assert!(url.starts_with("postgres://postern@localhost:"), "{url}");
        assert!(url.ends_with("/postern"), "{url}");
        assert!(!url.contains(":55432/"), "{url}");
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
        let url = super::start(&format!("postgres://u@127.0.0.1:{port}/db"), rtt)
            .await
            .unwrap();
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
