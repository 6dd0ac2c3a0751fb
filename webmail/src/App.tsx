// The app: the sign-in screen, the OAuth callback, then the mailbox.
import { useEffect, useState } from 'react';
import styled from 'styled-components';
import { MailController } from './lib/controller';
import { clearAll } from './lib/db';
import { beginSignIn, finishSignIn, Session } from './lib/oauth';
import { Mailbox } from './ui/Mailbox';
import { Button } from './ui/common';
import { theme } from './ui/theme';

const Center = styled.main`
  min-height: 100%;
  display: flex;
  align-items: center;
  justify-content: center;
  background: ${theme.panel};
  section { background: ${theme.bg}; padding: 2rem; border-radius: 8px; box-shadow: 0 1px 4px #0003; width: min(24rem, 92vw); }
  h1 { margin-top: 0; }
  .err { color: ${theme.danger}; }
`;

type State = { kind: 'loading' } | { kind: 'signedOut'; error?: string } | { kind: 'signedIn'; ctl: MailController };

// domainName asks the mailbox metadata (§11.1, public) which domain this
// server serves: the sign-in screen names it rather than host and port.
async function domainName(): Promise<string> {
  try {
    const r = await fetch('/.well-known/pullmail-mailbox', { cache: 'no-store' });
    if (r.ok) {
      const j = (await r.json()) as { domain?: unknown };
      if (typeof j.domain === 'string' && j.domain) return j.domain;
    }
  } catch {
    /* offline: the host name below */
  }
  return location.hostname;
}

export function App() {
  const [state, setState] = useState<State>({ kind: 'loading' });
  const [domain, setDomain] = useState('');
  useEffect(() => {
    if (state.kind === 'signedOut' && !domain) void domainName().then(setDomain);
  }, [state.kind, domain]);

  useEffect(() => {
    let ctl: MailController | null = null;
    (async () => {
      try {
        const url = new URL(location.href);
        let session: Session | null;
        if (url.pathname.endsWith('/callback')) {
          history.replaceState(null, '', `${import.meta.env.BASE_URL}`);
          const t = await finishSignIn(url);
          session = new Session();
          await session.accept(t);
        } else {
          session = await Session.restore();
        }
        if (!session) {
          setState({ kind: 'signedOut' });
          return;
        }
        ctl = new MailController(session);
        setState({ kind: 'signedIn', ctl });
        await ctl.start();
      } catch (e) {
        setState({ kind: 'signedOut', error: e instanceof Error ? e.message : String(e) });
      }
    })();
    return () => ctl?.stop();
  }, []);

  useEffect(() => {
    if (state.kind !== 'signedIn') return;
    return state.ctl.subscribe(() => {
      if (state.ctl.get().signedOut) setState({ kind: 'signedOut', error: 'Your session ended: sign in again.' });
    });
  }, [state]);

  async function signIn() {
    try {
      location.assign(await beginSignIn());
    } catch (e) {
      setState({ kind: 'signedOut', error: e instanceof Error ? e.message : String(e) });
    }
  }

  async function signOut() {
    if (state.kind !== 'signedIn') return;
    state.ctl.stop();
    try {
      await state.ctl.session.signOut();
    } catch {
      /* offline: the tokens are forgotten all the same */
    }
    await clearAll();
    setState({ kind: 'signedOut' });
  }

  if (state.kind === 'loading') return <Center><section aria-busy="true">Loading…</section></Center>;
  if (state.kind === 'signedOut') {
    return (
      <Center>
        <section>
          <h1>Pullmail</h1>
          <p data-testid="domain">Sign in with your {domain ? <strong>{domain}</strong> : 'mail'} account.</p>
          {state.error && <p className="err" role="alert">{state.error}</p>}
          <Button type="button" $primary onClick={() => void signIn()}>Sign in</Button>
        </section>
      </Center>
    );
  }
  return <Mailbox ctl={state.ctl} onSignOut={() => void signOut()} />;
}
