// Postern's one script: progressive enhancement, served from the binary. Every page works
// without it. It does two things:
// - the file's size is checked before a share is uploaded, where the browser knows it (the
//   server checks it again as the file arrives);
// - passkeys: without JavaScript, or in a browser without WebAuthn, the passkey controls stay
//   hidden and signing in with an emailed code works as before. The server keeps each challenge
//   and checks every answer (webauthn-rs); this script only carries them between the server and
//   the browser's WebAuthn API, which speaks binary where the server speaks base64url JSON.
(() => {
  'use strict';

  const file = document.querySelector('input[type=file][data-max-bytes]');
  if (file && file.form) {
    file.form.addEventListener('submit', (event) => {
      const max = Number(file.dataset.maxBytes);
      const chosen = file.files && file.files[0];
      const old = document.getElementById('payload-size-error');
      if (old) old.remove();
      if (!chosen || !max || chosen.size <= max) return;
      event.preventDefault();
      const error = document.createElement('p');
      error.className = 'error-message';
      error.id = 'payload-size-error';
      error.setAttribute('role', 'alert');
      error.textContent = `The file you chose is larger than ${file.dataset.maxWords}. Choose a smaller file, or send it in parts. Nothing was sent.`;
      file.before(error);
      file.setAttribute('aria-describedby', `${file.getAttribute('aria-describedby') || ''} payload-size-error`.trim());
      file.focus();
    });
  }

  if (!window.PublicKeyCredential || !navigator.credentials) return;

  const bytes = (s) => {
    const b64 = s.replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  };
  const text = (buffer) => {
    let s = '';
    for (const b of new Uint8Array(buffer)) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  };

  const post = async (url, body) => {
    const r = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      credentials: 'same-origin',
      body: JSON.stringify(body),
    });
    let answer = {};
    try {
      answer = await r.json();
    } catch (_) {
      // a page, not JSON: said below
    }
    if (!r.ok) throw new Error(answer.error || 'Something went wrong. Reload the page and try again.');
    return answer;
  };

  const say = (message) => {
    const el = document.getElementById('passkey-message');
    if (!el) return;
    el.textContent = message;
    el.hidden = !message;
    if (message) el.focus();
  };

  // What the browser says when a person cancels, or no passkey of theirs is on this device.
  const plain = (e, cancelled) =>
    e && e.name === 'NotAllowedError' ? cancelled : (e && e.message) || 'Something went wrong. Try again.';

  const show = (id) => {
    const el = document.getElementById(id);
    if (el) el.hidden = false;
    const note = document.getElementById('passkey-needs-script');
    if (note) note.hidden = true;
  };

  const add = document.getElementById('passkey-add');
  if (add) {
    show('passkey-add-form');
    add.addEventListener('click', async () => {
      say('');
      add.disabled = true;
      try {
        const begun = await post('/passkeys/options', {});
        const o = begun.options.publicKey;
        o.challenge = bytes(o.challenge);
        o.user.id = bytes(o.user.id);
        for (const c of o.excludeCredentials || []) c.id = bytes(c.id);
        const cred = await navigator.credentials.create({ publicKey: o });
        const r = cred.response;
        const done = await post('/passkeys/add', {
          ceremony: begun.ceremony,
          name: (document.getElementById('passkey-name') || {}).value || '',
          credential: {
            id: cred.id,
            rawId: text(cred.rawId),
            type: cred.type,
            response: {
              attestationObject: text(r.attestationObject),
              clientDataJSON: text(r.clientDataJSON),
              transports: typeof r.getTransports === 'function' ? r.getTransports() : undefined,
            },
          },
        });
        window.location.assign(done.to);
      } catch (e) {
        say(plain(e, 'No passkey was added: it was cancelled, or this device already has one for you. Try again, or use another device or security key.'));
        add.disabled = false;
      }
    });
  }

  const signIn = document.getElementById('passkey-sign-in');
  if (signIn) {
    show('passkey-sign-in-form');
    signIn.addEventListener('click', async () => {
      say('');
      const email = (document.getElementById('email') || {}).value || '';
      if (!email.trim()) {
        say('Enter your email address first, then choose "Sign in with a passkey".');
        return;
      }
      signIn.disabled = true;
      try {
        const begun = await post('/sign-in/passkey/options', { email: email.trim() });
        const o = begun.options.publicKey;
        o.challenge = bytes(o.challenge);
        for (const c of o.allowCredentials || []) c.id = bytes(c.id);
        const cred = await navigator.credentials.get({ publicKey: o });
        const r = cred.response;
        const next = document.querySelector('input[name=next]');
        const done = await post('/sign-in/passkey', {
          ceremony: begun.ceremony,
          next: next ? next.value : '',
          credential: {
            id: cred.id,
            rawId: text(cred.rawId),
            type: cred.type,
            response: {
              authenticatorData: text(r.authenticatorData),
              clientDataJSON: text(r.clientDataJSON),
              signature: text(r.signature),
              userHandle: r.userHandle ? text(r.userHandle) : null,
            },
          },
        });
        window.location.assign(done.to);
      } catch (e) {
        say(plain(e, 'You were not signed in: it was cancelled, or this device has no passkey for that address. Try again, or continue with a code by email.'));
        signIn.disabled = false;
      }
    });
  }
})();
