package mta

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/federation"
)

// maxAnswer bounds the JSON answers read.
const maxAnswer = 64 << 10

// exchange makes a token exchange (RFC 8693) at tokenURL with this MTA's
// client assertion and a DPoP proof, and returns the issued token. A 4xx
// answer other than 408, 429 and invalid_client is final.
func (m *MTA) exchange(ctx context.Context, tokenURL string, form url.Values) (string, error) {
	ca, err := m.cfg.ClientKey.Assertion(m.cfg.ClientID, tokenURL, m.cfg.Clock())
	if err != nil {
		return "", final(fmt.Errorf("signing the client assertion: %w", err))
	}
	form.Set("grant_type", federation.GrantTokenExch)
	form.Set("client_id", m.cfg.ClientID)
	form.Set("client_assertion_type", federation.ClientAssertionJB)
	form.Set("client_assertion", ca)
	tr := m.tr
	if tokenURL == m.tokenURL {
		tr = m.own // this domain's AS: in process when Config.OwnAS is set
	}
	resp, data, err := m.post(ctx, tokenURL, "", func(proof string) (*federation.Answer, error) {
		return tr.Exchange(ctx, federation.TokenRequest{Endpoint: tokenURL, DPoP: proof, Form: form})
	})
	if err != nil {
		return "", err
	}
	if data == nil {
		data, _ = io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	}
	resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	json.Unmarshal(data, &out)
	if resp.Status == http.StatusOK && out.AccessToken != "" {
		return out.AccessToken, nil
	}
	err = fmt.Errorf("token endpoint %s: %d %s: %s", tokenURL, resp.Status, out.Error, out.Description)
	if resp.Status >= 400 && resp.Status < 500 && !retryable(resp.Status) && out.Error != "invalid_client" {
		return "", refused(err)
	}
	return "", temporary(err)
}

// retryable reports whether a 4xx status is worth another try.
func retryable(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests
}

// post makes one request through the transport, with a fresh DPoP proof for
// a POST to target (and token, when not empty), answering a use_dpop_nonce challenge
// once: send makes the request with the proof given. It returns the answer
// with its body unread when the status is 200 or 206 (the caller closes
// it), and otherwise the first maxAnswer bytes of the body, already closed.
// Transport errors are temporary.
func (m *MTA) post(ctx context.Context, target, token string, send func(proof string) (*federation.Answer, error)) (*federation.Answer, []byte, error) {
	return m.request(ctx, http.MethodPost, target, token, send)
}

// request is post for any method: a fetch is a GET.
func (m *MTA) request(ctx context.Context, method, target, token string, send func(proof string) (*federation.Answer, error)) (*federation.Answer, []byte, error) {
	nonce := ""
	for try := 0; ; try++ {
		proof, err := m.cfg.DPoPKey.Proof(method, target, token, nonce, m.cfg.Clock())
		if err != nil {
			return nil, nil, final(fmt.Errorf("signing the DPoP proof: %w", err))
		}
		resp, err := send(proof)
		if err != nil {
			return nil, nil, temporary(err)
		}
		if resp.Status == http.StatusOK || resp.Status == http.StatusPartialContent {
			return resp, nil, nil
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		resp.Body.Close()
		if n := resp.Header.Get("DPoP-Nonce"); n != "" && try == 0 && bytes.Contains(data, []byte("use_dpop_nonce")) {
			nonce = n
			continue
		}
		return resp, data, nil
	}
}

// answerError describes a failed answer of a peer: its JSON error (§7) or
// its status.
func answerError(what string, status int, data []byte) error {
	e := errs.FromHTTP(status, data)
	return fmt.Errorf("%s: %d %s", what, status, e.Error())
}
