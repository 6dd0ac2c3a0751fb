// PKCE (RFC 7636) with the S256 method, the only one the server accepts.
import { b64u, sha256 } from './b64u';

// newVerifier returns a code_verifier of 43 characters from 32 random bytes
// (RFC 7636 §4.1).
export function newVerifier(): string {
  return b64u(crypto.getRandomValues(new Uint8Array(32)));
}

// challenge is the S256 code_challenge of a verifier (RFC 7636 §4.2).
export async function challenge(verifier: string): Promise<string> {
  return b64u(await sha256(verifier));
}

// randomState returns an unguessable state / nonce value.
export function randomState(): string {
  return b64u(crypto.getRandomValues(new Uint8Array(16)));
}
