// Package apidoc holds the server's HTTP contract as Go values: every
// endpoint (the mailbox API, the authorization server, federation,
// discovery, the operations endpoints) with the Go types it reads and
// writes. From them it generates the OpenAPI 3.1 document the server serves
// at /openapi.json (openapi.json beside this file) and the webmail's
// TypeScript types (webmail/src/lib/api.gen.ts). Neither file is edited by
// hand; TestGenerated fails when either is stale:
//
//	go generate ./apidoc
//
// rewrites both. The shapes come from the Go types by reflection, so a
// renamed JSON field changes the document; the prose, enums and bounds are
// annotations here, held to the types (an annotation of a member that does
// not exist is an error).
package apidoc

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
	"github.com/pullmail/pullmail/placeholder"
	"github.com/pullmail/pullmail/resource"
)

//go:generate go test -run ^TestGenerated$ -update .

// OpenAPI is the generated document (openapi.json), served at
// /openapi.json. Callers must not modify it.
//
//go:embed openapi.json
var OpenAPI []byte

// Description returns the whole contract. placeholderSchema is
// docs/placeholder.schema.json, which the document carries as its
// Placeholder* schemas.
func Description(placeholderSchema []byte) (API, error) {
	ph, err := placeholderSchemas(placeholderSchema)
	if err != nil {
		return API{}, err
	}
	schemas := map[string]Schema{
		"SystemFolder": {"description": "The system folders, in the order a client shows them (docs/PROTOCOL.md §8.18).", "type": "string", "enum": enum(meta.Folders...)},
		"Folder": {"description": "A system folder, or the name of a folder of the user's own (docs/PROTOCOL.md §8.18): 1 to 64 characters, no `/`, no control or format character, no leading or trailing space, no system folder's name in any case.",
			"anyOf": []any{Ref("SystemFolder"),
				Schema{"type": "string", "minLength": 1, "maxLength": meta.MaxFolderName, "pattern": "^[^/\\s](?:[^/]*[^/\\s])?$"}}},
		"Health": {"type": "object", "required": []string{"status"}, "properties": Schema{"status": Schema{"const": "ok"},
			"node": Schema{"type": "string", "description": "The node that answered, among the domain's nodes (`pullmail serve --node`); /healthz names it."}}},
		"DraftMessage": draftMessage(),
	}
	for k, v := range ph {
		schemas[k] = v
	}
	for k, v := range merge(federationSchemas, serverSchemas) {
		schemas[k] = v
	}
	api := API{
		Title:   "Pullmail",
		Version: "1",
		Summary: "A Pullmail domain's HTTP endpoints: the mailbox API, the authorization server, federation, discovery, operations.",
		Description: "Every HTTP endpoint of a Pullmail server (docs/PROTOCOL.md, which is normative; this document is generated from the server's Go routes and types by package apidoc).\n\n" +
			"The mailbox API (`/api/v1`, §8) needs `Authorization: Bearer <token>`; tokens are never accepted in the URL. Its errors are `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}` with a stable `code` (§8.3); the codes each response may carry are listed in its description. Message bodies and attachments are content-addressed resources: upload the bytes first (`POST /api/v1/resources`), then reference them by Content-ID from a Placeholder Message (§2–§3).\n\n" +
			"The authorization server (`/oauth/...`, §10) speaks OAuth 2.0: form-encoded requests, RFC 6749 §5.2 errors `{\"error\": \"...\", \"error_description\": \"...\"}`. Federation (`/federation/v1/...`, §11) is called by other domains' MTAs with DPoP-bound tokens (RFC 9449); discovery documents (`/.well-known/...`, §11.1) are public.",
		Tags: []Tag{
			{Name: "account", Description: "The signed-in user."},
			{Name: "resources", Description: "Content-addressed bytes: upload and download."},
			{Name: "messages", Description: "Drafts, sending, folders."},
			{Name: "sync", Description: "The change log a client polls to stay current."},
			{Name: "oauth", Description: "The authorization server (docs/PROTOCOL.md §10)."},
			{Name: "federation", Description: "Push and pull between domains (docs/PROTOCOL.md §11)."},
			{Name: "discovery", Description: "What other domains fetch to find this one's services and keys (docs/PROTOCOL.md §11.1)."},
			{Name: "operations", Description: "Health, readiness, metrics and this document; no authentication."},
		},
		Ops:     withBodyBounds(slices.Concat(mailboxOps, serverOps, authzOps, federationOps)),
		Types:   slices.Concat(commonTypes, mailboxTypes, serverTypes, authzTypes, federationTypes),
		Schemas: schemas,
		PathParams: map[string]string{
			"id": "id", "cid": "cid", "upload_id": "uploadId", "name": "folderName",
		},
		Parameters:    mailboxParameters,
		Headers:       merge(mailboxHeaders, federationHeaders),
		Responses:     merge(mailboxResponses, boundResponses),
		RequestBodies: mailboxBodies,
		Security: map[string]Schema{
			"bearer": {"type": "http", "scheme": "bearer", "description": "The mailbox API: `Authorization: Bearer <token>` (RFC 6750 §2.1), exactly one Authorization header: an access token of this domain's authorization server, or an admin-made token (`pullmail token create`, prefix `pmt_`). Tokens in the URL (RFC 6750 §2.3) are never accepted. Failures answer 401 with `WWW-Authenticate`."},
			"dpop":   {"type": "http", "scheme": "DPoP", "description": "Federation: `Authorization: DPoP <token>` with a `DPoP` proof (RFC 9449) by the key the token's `cnf.jkt` names: an assertion of the sender's domain for a push (docs/PROTOCOL.md §11.2), a fetch token of this domain for a pull (§11.3)."},
		},
	}
	return api, nil
}

// Generate builds the document and the TypeScript types.
func Generate(placeholderSchema []byte) (openapi, ts []byte, err error) {
	api, err := Description(placeholderSchema)
	if err != nil {
		return nil, nil, err
	}
	if openapi, err = Build(api); err != nil {
		return nil, nil, fmt.Errorf("openapi: %w", err)
	}
	if ts, err = TypeScript(openapi); err != nil {
		return nil, nil, fmt.Errorf("typescript: %w", err)
	}
	return openapi, ts, nil
}

// commonTypes are annotations shared by several parts of the API.
var commonTypes = []Type{
	{Go: TypeOf[resource.ID](), Name: "ContentID", Schema: Schema{
		"description": "A resource's id: unpadded base64url of the SHA-256 of its bytes, never salted; without angle brackets.",
		"type":        "string", "pattern": "^[A-Za-z0-9_-]{43}$", "example": "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"}},
}

// errorJSON is the content of every error answer of the mailbox API,
// discovery and federation (errs.Body).
var errorJSON = []Content{JSON[errs.Body]()}

// enum lists string constants as a JSON Schema enum.
func enum[S ~string](values ...S) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}

func merge[V any](ms ...map[string]V) map[string]V {
	out := map[string]V{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// draftMessage is a Placeholder Message without the headers only a server
// sets (placeholder.ServerOwned), but Message-ID, which an update may echo.
func draftMessage() Schema {
	var forbidden []any
	for _, h := range placeholder.ServerOwned() {
		if h != placeholder.HMessageID {
			forbidden = append(forbidden, Schema{"required": []string{h}})
		}
	}
	return Schema{
		"description": "A Placeholder Message as a client writes it: none of the headers that only a server sets (docs/PROTOCOL.md §6.2), except that an update may repeat the draft's own Message-ID unchanged.",
		"allOf":       []any{Ref("PlaceholderMessage"), Schema{"properties": Schema{"headers": Schema{"not": Schema{"anyOf": forbidden}}}}},
	}
}

// boundResponses are the answers of the server's request bounds (package
// server's hygiene), in front of every handler: they carry the Error shape
// whatever the endpoint's own errors are.
var boundResponses = map[string]Response{
	"RequestTimeout": {Description: "`request_timeout`: the request body did not arrive in time (outside `/api/` within 20 seconds by default; under `/api/` a pause of more than 2 minutes). The connection is closed.", Content: errorJSON},
	"BodyTooLarge":   {Description: "`too_large`: the request body is larger than the server's bound outside `/api/` (2 MiB by default).", Content: errorJSON},
}

// withBodyBounds adds the bounds' answers to every operation that reads a
// body: 408, and outside /api/ (where the mailbox API has its own limits)
// 413 unless the operation documents its own.
func withBodyBounds(ops []Op) []Op {
	out := make([]Op, len(ops))
	for i, op := range ops {
		if op.Body != nil {
			has := map[int]bool{}
			for _, r := range op.Responses {
				has[r.Status] = true
			}
			op.Responses = slices.Clone(op.Responses)
			if !has[408] {
				op.Responses = append(op.Responses, Response{Status: 408, Ref: "RequestTimeout"})
			}
			if !has[413] && !strings.HasPrefix(op.Path, "/api/") {
				op.Responses = append(op.Responses, Response{Status: 413, Ref: "BodyTooLarge"})
			}
		}
		out[i] = op
	}
	return out
}
