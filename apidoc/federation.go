package apidoc

import "github.com/pullmail/pullmail/federation"

// Federation's receiving side (docs/PROTOCOL.md §11.2, §11.3): what other
// domains' MTAs call.
var federationOps = []Op{
	{
		Method: "POST", Path: federation.PathMessages, ID: "federationPush", Tags: []string{"federation"}, Auth: DPoP,
		Summary: "Push a message (another domain's MTA)",
		Description: "The sender's MTA delivers one copy (docs/PROTOCOL.md §11.2) with `Authorization: DPoP <assertion>` (typ `pullmail-assertion+jwt`, issued by the sender's authorization server for this domain, §10.5) and a DPoP proof by the key the assertion names. The recipient checks, in this order, the proof and the token, the sender's domain and keys, the audience and freshness, the envelope and digests, and the recipients, storing nothing unless every check holds. " +
			"The assertion's issuer and signature are checked before the body is read. Accepted, every local recipient gets a copy with status `fetching` and one pull of the resources is queued.",
		Params: []Param{dpopProof(true)},
		Body:   &Body{Description: "The Placeholder Message as the sender stored it and the chain of signed envelope headers, newest hop first (§12.1).", Content: []Content{JSON[federation.Envelope]()}},
		Responses: []Response{
			{Status: 200, Description: "`duplicate`: this copy (Message-ID and Recipients-Digest) was accepted before; nothing changed.", Content: []Content{{Media: "application/json", Schema: Ref("PushAnswer")}}},
			{Status: 202, Description: "`accepted`: stored for every local recipient; the resources will be pulled.", Content: []Content{{Media: "application/json", Schema: Ref("PushAnswer")}}},
			{Status: 400, Description: "`malformed_json` (not the envelope), `eht_mismatch` (the signed headers are not the placeholder's), `digest_mismatch` (Body-Digest or Recipients-Digest), `bad_chain`, `not_sent`, `no_local_recipient` (no recipient at this domain), `unknown_recipient` (naming them), or a Placeholder Message code of docs/PROTOCOL.md §7.", Content: errorJSON},
			{Status: 401, Description: "`invalid_dpop_proof`, `use_dpop_nonce` (retry with the `DPoP-Nonce`), `invalid_token`, `dpop_key_mismatch`, `bad_signature`, `expired_assertion`, `replayed_assertion`.", Content: errorJSON,
				Headers: map[string]Header{"WWW-Authenticate": {Ref: "DPoPAuthenticate"}, "DPoP-Nonce": {Ref: "DPoPNonce"}}},
			{Status: 403, Description: "`from_domain_mismatch`, `issuer_mismatch`, `wrong_client`, `wrong_audience`.", Content: errorJSON},
			{Status: 413, Description: "`document_too_large`: the body, or the message with the headers the recipient adds, is too large; `too_large`: the body is over the server's bound for bodies outside `/api/` (2 MiB by default).", Content: errorJSON},
			{Status: 500, Ref: "Internal"},
			{Status: 503, Description: "`cancelled`, or the sender's domain could not be discovered now: retry later.", Content: errorJSON},
		},
	},
	{
		Method: "GET", Path: federation.PathResources + "/{cid}", ID: "federationFetch", Tags: []string{"federation"}, Auth: DPoP,
		Summary: "Pull a resource (another domain's MTA)",
		Description: "The recipient's MTA fetches one resource of a message it accepted (docs/PROTOCOL.md §11.3) with `Authorization: DPoP <fetch token>` (this domain's `at+jwt`, scope `fetch`, §10.6) and a proof by the token's key. The token carries this domain's verdict on the message's chain (its claim `fetch`), reached once when it was issued: the request carries nothing else, and the answer is `Cache-Control: no-store`. " +
			"`Range`, `If-Range`, `If-Match` and `If-None-Match` apply as to any GET (one range). Any refusal answers 404 `not_found`, exactly as for a resource that does not exist.",
		Params: []Param{dpopProof(true),
			{Name: "Range", In: "header", Description: "One byte range, to resume after a cut: `bytes=N-`.", Schema: Schema{"type": "string"}},
			{Name: "If-Range", In: "header", Description: "The resource's ETag, `\"<content-id>\"`.", Schema: Schema{"type": "string"}}},
		Responses: []Response{
			{Status: 200, Description: "The bytes.", Headers: map[string]Header{"ETag": {Ref: "ETag"}}, Content: []Content{{Media: "application/octet-stream", Schema: Schema{"type": "string", "contentMediaType": "application/octet-stream"}}}},
			{Status: 206, Description: "The range asked for.", Headers: map[string]Header{"ETag": {Ref: "ETag"}, "Content-Range": {Description: "`bytes FIRST-LAST/SIZE`.", Schema: Schema{"type": "string"}}}, Content: []Content{{Media: "application/octet-stream", Schema: Schema{"type": "string", "contentMediaType": "application/octet-stream"}}}},
			{Status: 304, Description: "Not modified (`If-None-Match`)."},
			{Status: 401, Description: "`use_dpop_nonce`: retry with the `DPoP-Nonce`.", Content: errorJSON,
				Headers: map[string]Header{"WWW-Authenticate": {Ref: "DPoPAuthenticate"}, "DPoP-Nonce": {Ref: "DPoPNonce"}}},
			{Status: 404, Description: "`not_found`: a refused token or proof, a sent copy no longer stored, a content-id the message does not reference, or no such resource (all alike).", Content: errorJSON},
			{Status: 412, Description: "`precondition_failed`: an `If-Match` that does not name the ETag.", Content: errorJSON},
			{Status: 416, Description: "`range_not_satisfiable`: `Content-Range: bytes */SIZE` tells the size.", Content: errorJSON},
			{Status: 500, Ref: "Internal"},
			{Status: 503, Description: "`resource_damaged`: the stored copy is damaged where the answer starts (§3.6); retry later.", Content: errorJSON},
		},
	},
}

var federationTypes = []Type{
	{Go: TypeOf[federation.Envelope](), Name: "Envelope", Description: "A push's body (docs/PROTOCOL.md §11.2).", Fields: map[string]Schema{
		"placeholder": Ref("PlaceholderMessage"),
		"chain":       {"minItems": 1, "maxItems": federation.MaxChain, "description": "The signed envelope headers, newest hop first."},
	}},
	{Go: TypeOf[federation.ChainElement](), Name: "ChainElement", Description: "One hop of a chain (docs/PROTOCOL.md §12.1).", Fields: map[string]Schema{
		"headers":       Ref("PlaceholderHeaders"),
		"jwt-assertion": {"description": "The hop's assertion, a compact JWS (typ `pullmail-assertion+jwt`) whose `eht` signs `headers`."},
	}},
}

var federationSchemas = map[string]Schema{
	"PushAnswer": {"type": "object", "required": []string{"status"}, "properties": Schema{"status": Schema{"type": "string", "enum": []string{"accepted", "duplicate"}}}},
}

var federationHeaders = map[string]Header{
	"DPoPNonce":        {Description: "A nonce the next DPoP proof must carry (RFC 9449 §8).", Schema: Schema{"type": "string"}},
	"DPoPAuthenticate": {Description: "`DPoP` with the RFC 9449 §7.1 error and the algorithms accepted.", Schema: Schema{"type": "string"}},
}
