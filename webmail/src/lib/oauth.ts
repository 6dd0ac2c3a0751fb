// Signing in with Authorization Code + PKCE (RFC 6749 §4.1, RFC 7636) at the
// domain's own authorization server, found by RFC 8414 metadata on the same
// origin. Tokens: the access token lives in memory only; the rotating
// refresh token is kept in IndexedDB (never localStorage), so a reload or an
// offline start does not ask for the password again. The PKCE verifier and
// state live in sessionStorage for the one round trip to the login page.
import { kvDelete, kvGet, kvSet } from './db';
import { challenge, newVerifier, randomState } from './pkce';

export const CLIENT_ID = 'webmail';
export const SCOPE = 'mail';

export interface ASMetadata {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  revocation_endpoint?: string;
}

export interface TokenAnswer {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token?: string;
  scope?: string;
}

export class OAuthError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'OAuthError';
  }
}

const PENDING = 'pullmail.pkce';

export function redirectURI(origin = location.origin): string {
  return `${origin}/webmail/callback`;
}

let metadata: Promise<ASMetadata> | null = null;

export function discover(origin = location.origin): Promise<ASMetadata> {
  metadata ??= fetch(`${origin}/.well-known/oauth-authorization-server`, { cache: 'no-store' }).then(async (r) => {
    if (!r.ok) throw new Error(`authorization server metadata: HTTP ${r.status}`);
    return (await r.json()) as ASMetadata;
  });
  metadata.catch(() => (metadata = null));
  return metadata;
}

// authorizeURL builds the authorization request and remembers its verifier.
export async function beginSignIn(): Promise<string> {
  const md = await discover();
  const verifier = newVerifier();
  const state = randomState();
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state }));
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: redirectURI(),
    scope: SCOPE,
    state,
    code_challenge: await challenge(verifier),
    code_challenge_method: 'S256',
  });
  return `${md.authorization_endpoint}?${q}`;
}

async function tokenRequest(body: Record<string, string>): Promise<TokenAnswer> {
  const md = await discover();
  const r = await fetch(md.token_endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(body),
    cache: 'no-store',
  });
  const j = (await r.json().catch(() => ({}))) as Partial<TokenAnswer> & { error?: string; error_description?: string };
  if (!r.ok || !j.access_token) throw new OAuthError(j.error ?? `http_${r.status}`, j.error_description ?? `token endpoint: HTTP ${r.status}`);
  return j as TokenAnswer;
}

// finishSignIn redeems the code of the callback URL.
export async function finishSignIn(url: URL): Promise<TokenAnswer> {
  const pending = JSON.parse(sessionStorage.getItem(PENDING) ?? 'null') as { verifier: string; state: string } | null;
  sessionStorage.removeItem(PENDING);
  const p = url.searchParams;
  if (p.get('error')) throw new OAuthError(p.get('error')!, p.get('error_description') ?? p.get('error')!);
  if (!pending || p.get('state') !== pending.state) throw new OAuthError('bad_state', 'the sign-in answer does not match the request; try again');
  const md = await discover();
  const iss = p.get('iss');
  if (iss && iss !== md.issuer) throw new OAuthError('bad_issuer', 'the sign-in answer comes from another issuer');
  return tokenRequest({
    grant_type: 'authorization_code',
    code: p.get('code') ?? '',
    redirect_uri: redirectURI(),
    client_id: CLIENT_ID,
    code_verifier: pending.verifier,
  });
}

// Session holds the tokens and refreshes the access token before it expires.
export class Session {
  private access = '';
  private expires = 0;
  private refreshing: Promise<string> | null = null;
  // Network failures of refresh in a row, and when the last was: while
  // offline, or until the backoff has passed, a refresh fails at once
  // instead of asking for the metadata and a token again.
  private failures = 0;
  private failedAt = 0;

  // resetBackoff lets the next refresh try at once (the network is back).
  resetBackoff(): void {
    this.failures = 0;
  }

  static async restore(): Promise<Session | null> {
    const rt = await kvGet<string>('refresh_token');
    return rt ? new Session() : null;
  }

  async accept(t: TokenAnswer): Promise<void> {
    this.access = t.access_token;
    this.expires = Date.now() + t.expires_in * 1000;
    if (t.refresh_token) await kvSet('refresh_token', t.refresh_token);
  }

  // token returns an access token valid for at least 30 more seconds.
  async token(): Promise<string> {
    if (this.access && Date.now() < this.expires - 30_000) return this.access;
    return this.refresh();
  }

  refresh(): Promise<string> {
    if (!this.refreshing) {
      if (typeof navigator !== 'undefined' && navigator.onLine === false) return Promise.reject(new TypeError('offline'));
      if (this.failures > 0 && Date.now() - this.failedAt < Math.min(60_000, 1000 * 2 ** this.failures)) {
        return Promise.reject(new TypeError('the server could not be reached; trying again later'));
      }
    }
    this.refreshing ??= (async () => {
      try {
        const rt = await kvGet<string>('refresh_token');
        if (!rt) throw new OAuthError('signed_out', 'not signed in');
        let t: TokenAnswer;
        try {
          t = await tokenRequest({ grant_type: 'refresh_token', refresh_token: rt, client_id: CLIENT_ID });
        } catch (e) {
          if (e instanceof TypeError) {
            this.failures++;
            this.failedAt = Date.now();
          }
          throw e;
        }
        this.failures = 0;
        await this.accept(t);
        return this.access;
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  // msUntilRefresh tells the app when to refresh silently.
  msUntilRefresh(): number {
    return Math.max(1_000, this.expires - Date.now() - 60_000);
  }

  // signOut revokes the grant family (RFC 7009) and forgets the tokens.
  async signOut(): Promise<void> {
    const rt = await kvGet<string>('refresh_token');
    try {
      const md = await discover();
      if (md.revocation_endpoint && (rt || this.access)) {
        await fetch(md.revocation_endpoint, {
          method: 'POST',
          headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token: rt ?? this.access, client_id: CLIENT_ID }),
        });
      }
    } finally {
      this.access = '';
      await kvDelete('refresh_token');
    }
  }
}
