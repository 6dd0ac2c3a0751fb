import { describe, expect, it } from 'vitest';
import { challenge, newVerifier } from './pkce';
import { contentID } from './b64u';

describe('pkce', () => {
  it('matches RFC 7636 Appendix B', async () => {
    expect(await challenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk')).toBe(
      'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
    );
  });
  it('makes verifiers the server accepts', () => {
    const v = newVerifier();
    expect(v).toMatch(/^[A-Za-z0-9._~-]{43,128}$/);
    expect(newVerifier()).not.toBe(v);
  });
  it('computes the Content-ID of the empty resource', async () => {
    expect(await contentID('')).toBe('47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU');
  });
});
