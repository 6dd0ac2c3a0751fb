package jmap

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/mailbox"
)

// systemFolders are the system folders in order, with their JMAP names
// and roles (RFC 8621 §2, the IANA mailbox role registry of RFC 8457).
// requests has no registered role.
var systemFolders = []struct{ folder, name, role string }{
	{"inbox", "Inbox", "inbox"}, {"drafts", "Drafts", "drafts"}, {"sent", "Sent", "sent"},
	{"archive", "Archive", "archive"}, {"requests", "Requests", ""}, {"junk", "Junk", "junk"},
	{"trash", "Trash", "trash"},
}

// shortHash is 16 bytes of SHA-256 in base64url: ids and states made from
// longer or arbitrary strings.
func shortHash(b []byte) string {
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// mailboxID is a folder's Mailbox id: the system folder's name, or "F"
// and a hash of a user folder's name (a name may hold any character and
// 64 of them; an id only [A-Za-z0-9_-]).
func mailboxID(folder string) string {
	for _, s := range systemFolders {
		if s.folder == folder {
			return folder
		}
	}
	return "F" + shortHash([]byte(folder))
}

// Mailbox is a JMAP Mailbox (RFC 8621 §2).
type Mailbox struct {
	ID            string  `json:"id"`
	Name          string  `json:"name"`
	ParentID      *string `json:"parentId"`
	Role          *string `json:"role"`
	SortOrder     int     `json:"sortOrder"`
	TotalEmails   int     `json:"totalEmails"`
	UnreadEmails  int     `json:"unreadEmails"`
	TotalThreads  int     `json:"totalThreads"`
	UnreadThreads int     `json:"unreadThreads"`
	MyRights      Rights  `json:"myRights"`
	IsSubscribed  bool    `json:"isSubscribed"`
	folder        string
}

// Rights are a Mailbox's myRights.
type Rights struct {
	MayReadItems   bool `json:"mayReadItems"`
	MayAddItems    bool `json:"mayAddItems"`
	MayRemoveItems bool `json:"mayRemoveItems"`
	MaySetSeen     bool `json:"maySetSeen"`
	MaySetKeywords bool `json:"maySetKeywords"`
	MayCreateChild bool `json:"mayCreateChild"`
	MayRename      bool `json:"mayRename"`
	MayDelete      bool `json:"mayDelete"`
	MaySubmit      bool `json:"maySubmit"`
}

// mailboxes lists the user's folders as Mailboxes. Threads are counted as
// emails: the folder counts are per message.
func (c *call) mailboxes() ([]Mailbox, error) {
	fl, err := c.h.mb.Folders(c.ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Mailbox, 0, len(fl.Folders))
	for i, f := range fl.Folders {
		m := Mailbox{ID: mailboxID(f.Name), Name: f.Name, SortOrder: i, TotalEmails: f.Total, UnreadEmails: f.Unseen,
			TotalThreads: f.Total, UnreadThreads: f.Unseen, IsSubscribed: true, folder: f.Name,
			MyRights: Rights{MayReadItems: true, MayAddItems: true, MayRemoveItems: true, MaySetSeen: true,
				MaySetKeywords: true, MayDelete: !f.System}}
		for _, s := range systemFolders {
			if s.folder == f.Name {
				m.Name = s.name
				if s.role != "" {
					role := s.role
					m.Role = &role
				}
				if s.folder == "drafts" || s.folder == "sent" {
					m.MyRights.MayAddItems = false // compose and send put mail there
				}
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// folderOf finds the folder of a Mailbox id.
func (c *call) folderOf(id string) (string, bool, error) {
	ms, err := c.mailboxes()
	if err != nil {
		return "", false, err
	}
	id = c.resolveID(id)
	for _, m := range ms {
		if m.ID == id {
			return m.folder, true, nil
		}
	}
	return "", false, nil
}

// state is the state string of every type: the change log's cursor
// (mailbox.List.Cursor), which moves whenever anything of the user's (or,
// the cursor being the store's, anyone's) changes. Mailbox states add a
// hash of the folder names, which the change log does not record.
func (c *call) state() (string, error) {
	l, err := c.h.mb.List(c.ctx, mailbox.ListOptions{Folder: "inbox", Limit: 1})
	if err != nil {
		return "", err
	}
	return l.Cursor, nil
}

func (c *call) mailboxState(ms []Mailbox) (string, error) {
	st, err := c.state()
	if err != nil {
		return "", err
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.folder
	}
	return st + "." + shortHash([]byte(strings.Join(names, "/"))), nil
}

// GetArgs are the arguments of every /get (RFC 8620 §5.1).
type GetArgs struct {
	AccountID  string    `json:"accountId"`
	IDs        *[]string `json:"ids"`
	Properties *[]string `json:"properties"`
}

// GetResponse is a /get answer.
type GetResponse struct {
	AccountID string   `json:"accountId"`
	State     string   `json:"state"`
	List      []any    `json:"list"`
	NotFound  []string `json:"notFound"`
}

// pick keeps the named properties of v (always its id).
func pick(v any, props *[]string) any {
	if props == nil {
		return v
	}
	b, _ := json.Marshal(v)
	var m map[string]json.RawMessage
	json.Unmarshal(b, &m)
	out := map[string]json.RawMessage{"id": m["id"]}
	for _, p := range *props {
		if x, ok := m[p]; ok {
			out[p] = x
		}
	}
	return out
}

func (c *call) checkGet(a *GetArgs) error {
	if a.IDs != nil && len(*a.IDs) > c.h.lim.MaxObjectsInGet {
		return merr("requestTooLarge", "at most %d ids in a /get", c.h.lim.MaxObjectsInGet)
	}
	if a.IDs != nil {
		for i, id := range *a.IDs {
			(*a.IDs)[i] = c.resolveID(id)
		}
	}
	return nil
}

func (c *call) mailboxGet(args json.RawMessage) (any, error) {
	var a GetArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if err := c.checkGet(&a); err != nil {
		return nil, err
	}
	ms, err := c.mailboxes()
	if err != nil {
		return nil, err
	}
	st, err := c.mailboxState(ms)
	if err != nil {
		return nil, err
	}
	out := GetResponse{AccountID: c.acct, State: st, List: []any{}, NotFound: []string{}}
	byID := map[string]Mailbox{}
	for _, m := range ms {
		byID[m.ID] = m
	}
	if a.IDs == nil {
		for _, m := range ms {
			out.List = append(out.List, pick(m, a.Properties))
		}
		return out, nil
	}
	for _, id := range *a.IDs {
		if m, ok := byID[id]; ok {
			out.List = append(out.List, pick(m, a.Properties))
		} else {
			out.NotFound = append(out.NotFound, id)
		}
	}
	return out, nil
}

// ChangesArgs are the arguments of every /changes (RFC 8620 §5.2).
type ChangesArgs struct {
	AccountID  string `json:"accountId"`
	SinceState string `json:"sinceState"`
	MaxChanges *int   `json:"maxChanges"`
}

// ChangesResponse is a /changes answer.
type ChangesResponse struct {
	AccountID         string    `json:"accountId"`
	OldState          string    `json:"oldState"`
	NewState          string    `json:"newState"`
	HasMoreChanges    bool      `json:"hasMoreChanges"`
	Created           []string  `json:"created"`
	Updated           []string  `json:"updated"`
	Destroyed         []string  `json:"destroyed"`
	UpdatedProperties *[]string `json:"updatedProperties,omitempty"`
}

// feed reads the change log from a state on (at most max entries).
func (c *call) feed(since string, max int) (mailbox.Changes, error) {
	chs, err := c.h.mb.Changes(c.ctx, since, max)
	if err != nil {
		if errs.CodeOf(err) == "bad_cursor" || errs.CodeOf(err) == "resync_required" {
			return chs, merr("cannotCalculateChanges", "state %q is not one this server can calculate changes from", since)
		}
		return chs, err
	}
	return chs, nil
}

func maxChanges(m *int) (int, error) {
	if m == nil {
		return 1000, nil
	}
	if *m <= 0 {
		return 0, merr("invalidArguments", "maxChanges must be positive")
	}
	return min(*m, 1000), nil
}

func (c *call) mailboxChanges(args json.RawMessage) (any, error) {
	var a ChangesArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	limit, err := maxChanges(a.MaxChanges)
	if err != nil {
		return nil, err
	}
	cursor, names, ok := strings.Cut(a.SinceState, ".")
	ms, err := c.mailboxes()
	if err != nil {
		return nil, err
	}
	now, err := c.mailboxState(ms)
	if err != nil {
		return nil, err
	}
	_, nowNames, _ := strings.Cut(now, ".")
	if !ok || names != nowNames {
		// A folder was added or removed: the log does not say which.
		return nil, merr("cannotCalculateChanges", "the folders changed since %q: get them again", a.SinceState)
	}
	chs, err := c.feed(cursor, 1000)
	if err != nil {
		return nil, err
	}
	touched := map[string]bool{}
	for _, ch := range chs.Changes {
		touched[mailboxID(ch.Folder)] = true
	}
	out := ChangesResponse{AccountID: c.acct, OldState: a.SinceState, NewState: chs.Cursor + "." + nowNames,
		HasMoreChanges: chs.More, Created: []string{}, Updated: []string{}, Destroyed: []string{},
		UpdatedProperties: &[]string{"totalEmails", "unreadEmails", "totalThreads", "unreadThreads"}}
	for _, m := range ms {
		if touched[m.ID] && len(out.Updated) < limit {
			out.Updated = append(out.Updated, m.ID)
		}
	}
	return out, nil
}

// QueryArgs are the arguments of /query (RFC 8620 §5.5).
type QueryArgs struct {
	AccountID      string          `json:"accountId"`
	Filter         json.RawMessage `json:"filter"`
	Sort           []Comparator    `json:"sort"`
	Position       int             `json:"position"`
	Anchor         *string         `json:"anchor"`
	AnchorOffset   int             `json:"anchorOffset"`
	Limit          *int            `json:"limit"`
	CalculateTotal bool            `json:"calculateTotal"`
	// Email/query (RFC 8621 §4.4)
	CollapseThreads bool `json:"collapseThreads"`
	// Mailbox/query (RFC 8621 §2.3)
	SortAsTree   bool `json:"sortAsTree"`
	FilterAsTree bool `json:"filterAsTree"`
}

// Comparator is one sort criterion (RFC 8620 §5.5).
type Comparator struct {
	Property    string `json:"property"`
	IsAscending *bool  `json:"isAscending"`
	Collation   string `json:"collation,omitempty"`
	Keyword     string `json:"keyword,omitempty"`
}

func (s Comparator) ascending() bool { return s.IsAscending == nil || *s.IsAscending }

// QueryResponse is a /query answer.
type QueryResponse struct {
	AccountID           string   `json:"accountId"`
	QueryState          string   `json:"queryState"`
	CanCalculateChanges bool     `json:"canCalculateChanges"`
	Position            int      `json:"position"`
	IDs                 []string `json:"ids"`
	Total               *int     `json:"total,omitempty"`
	Limit               *int     `json:"limit,omitempty"`
}

// window applies position, anchor and limit to a sorted result (RFC 8620
// §5.5).
func window(ids []string, a QueryArgs, maxLimit int) (QueryResponse, error) {
	out := QueryResponse{}
	pos := a.Position
	if a.Anchor != nil {
		idx := -1
		for i, id := range ids {
			if id == *a.Anchor {
				idx = i
				break
			}
		}
		if idx < 0 {
			return out, merr("anchorNotFound", "the anchor %q is not in the results", *a.Anchor)
		}
		pos = max(idx+a.AnchorOffset, 0)
	} else if pos < 0 {
		pos = max(len(ids)+pos, 0)
	}
	limit := maxLimit
	if a.Limit != nil {
		if *a.Limit < 0 {
			return out, merr("invalidArguments", "limit must not be negative")
		}
		if *a.Limit < limit {
			limit = *a.Limit
		} else if *a.Limit > limit {
			out.Limit = &limit
		}
	}
	pos = min(pos, len(ids))
	end := min(pos+limit, len(ids))
	out.Position, out.IDs = pos, append([]string{}, ids[pos:end]...)
	if a.CalculateTotal {
		n := len(ids)
		out.Total = &n
	}
	return out, nil
}

func (c *call) mailboxQuery(args json.RawMessage) (any, error) {
	var a QueryArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	var f struct {
		ParentID   *string `json:"parentId"`
		Name       *string `json:"name"`
		Role       *string `json:"role"`
		HasAnyRole *bool   `json:"hasAnyRole"`
		IsSub      *bool   `json:"isSubscribed"`
	}
	if len(a.Filter) > 0 && string(a.Filter) != "null" {
		if err := decodeArgs(a.Filter, &f); err != nil {
			return nil, merr("unsupportedFilter", "Mailbox/query filters on parentId, name, role, hasAnyRole, isSubscribed")
		}
	}
	ms, err := c.mailboxes()
	if err != nil {
		return nil, err
	}
	var keep []Mailbox
	for _, m := range ms {
		role := ""
		if m.Role != nil {
			role = *m.Role
		}
		switch {
		case f.ParentID != nil, f.Name != nil && !strings.Contains(strings.ToLower(m.Name), strings.ToLower(*f.Name)),
			f.Role != nil && *f.Role != role, f.HasAnyRole != nil && *f.HasAnyRole != (role != ""),
			f.IsSub != nil && !*f.IsSub:
			continue
		}
		keep = append(keep, m)
	}
	for _, s := range a.Sort {
		if s.Property != "sortOrder" && s.Property != "name" {
			return nil, merr("unsupportedSort", "Mailbox/query sorts by sortOrder or name")
		}
	}
	sort.SliceStable(keep, func(i, j int) bool {
		for _, s := range a.Sort {
			var less, eq bool
			if s.Property == "name" {
				less, eq = keep[i].Name < keep[j].Name, keep[i].Name == keep[j].Name
			} else {
				less, eq = keep[i].SortOrder < keep[j].SortOrder, keep[i].SortOrder == keep[j].SortOrder
			}
			if !eq {
				return less == s.ascending()
			}
		}
		return false
	})
	ids := make([]string, len(keep))
	for i, m := range keep {
		ids[i] = m.ID
	}
	out, err := window(ids, a, 1000)
	if err != nil {
		return nil, err
	}
	out.AccountID = c.acct
	if out.QueryState, err = c.mailboxState(ms); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *call) cannotQueryChanges(json.RawMessage) (any, error) {
	return nil, merr("cannotCalculateChanges", "query changes are not kept: run the query again")
}

// SetArgs are the arguments of every /set (RFC 8620 §5.3).
type SetArgs struct {
	AccountID string                     `json:"accountId"`
	IfInState *string                    `json:"ifInState"`
	Create    map[string]json.RawMessage `json:"create"`
	Update    map[string]json.RawMessage `json:"update"`
	Destroy   []string                   `json:"destroy"`
	// Mailbox/set
	OnDestroyRemoveEmails bool `json:"onDestroyRemoveEmails"`
}

// SetResponse is a /set answer.
type SetResponse struct {
	AccountID    string               `json:"accountId"`
	OldState     string               `json:"oldState"`
	NewState     string               `json:"newState"`
	Created      map[string]any       `json:"created"`
	Updated      map[string]any       `json:"updated"`
	Destroyed    []string             `json:"destroyed"`
	NotCreated   map[string]*SetError `json:"notCreated"`
	NotUpdated   map[string]*SetError `json:"notUpdated"`
	NotDestroyed map[string]*SetError `json:"notDestroyed"`
}

// SetError is a /set failure of one record (RFC 8620 §5.3).
type SetError struct {
	Type        string   `json:"type"`
	Description string   `json:"description,omitempty"`
	Properties  []string `json:"properties,omitempty"`
}

func setErr(typ, desc string, props ...string) *SetError {
	return &SetError{Type: typ, Description: desc, Properties: props}
}

// toSetError maps a mailbox error to a SetError.
func toSetError(err error) *SetError {
	var se *SetError
	if errors.As(err, &se) {
		return se
	}
	var e *errs.Error
	if !errors.As(err, &e) || e.Kind == errs.Internal {
		return setErr("serverFail", "internal error")
	}
	switch e.Kind {
	case errs.NotFound:
		return setErr("notFound", e.Message)
	case errs.TooLarge:
		return setErr("tooLarge", e.Message)
	case errs.InsufficientStorage:
		return setErr("overQuota", e.Message)
	case errs.Forbidden, errs.Conflict:
		return setErr("forbidden", e.Message)
	}
	return setErr("invalidProperties", e.Message)
}

func (e *SetError) Error() string { return e.Type + ": " + e.Description }

func (c *call) checkSet(a *SetArgs, state string) error {
	if n := len(a.Create) + len(a.Update) + len(a.Destroy); n > c.h.lim.MaxObjectsInSet {
		return merr("requestTooLarge", "at most %d objects in a /set", c.h.lim.MaxObjectsInSet)
	}
	if a.IfInState != nil && *a.IfInState != state {
		return merr("stateMismatch", "the state is %q, not %q", state, *a.IfInState)
	}
	return nil
}

func newSetResponse(acct, old string) SetResponse {
	return SetResponse{AccountID: acct, OldState: old, Created: map[string]any{}, Updated: map[string]any{},
		Destroyed: []string{}, NotCreated: map[string]*SetError{}, NotUpdated: map[string]*SetError{},
		NotDestroyed: map[string]*SetError{}}
}

// nullEmpty makes the empty maps and lists of a /set answer null, as RFC
// 8620 §5.3 writes them.
func (r SetResponse) MarshalJSON() ([]byte, error) {
	m := map[string]any{"accountId": r.AccountID, "oldState": r.OldState, "newState": r.NewState}
	for k, v := range map[string]int{"created": len(r.Created), "updated": len(r.Updated), "destroyed": len(r.Destroyed),
		"notCreated": len(r.NotCreated), "notUpdated": len(r.NotUpdated), "notDestroyed": len(r.NotDestroyed)} {
		m[k] = nil
		if v > 0 {
			switch k {
			case "created":
				m[k] = r.Created
			case "updated":
				m[k] = r.Updated
			case "destroyed":
				m[k] = r.Destroyed
			case "notCreated":
				m[k] = r.NotCreated
			case "notUpdated":
				m[k] = r.NotUpdated
			case "notDestroyed":
				m[k] = r.NotDestroyed
			}
		}
	}
	return json.Marshal(m)
}

func (c *call) mailboxSet(args json.RawMessage) (any, error) {
	var a SetArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	ms, err := c.mailboxes()
	if err != nil {
		return nil, err
	}
	old, err := c.mailboxState(ms)
	if err != nil {
		return nil, err
	}
	if err := c.checkSet(&a, old); err != nil {
		return nil, err
	}
	out := newSetResponse(c.acct, old)
	for cid, raw := range a.Create {
		var m struct {
			Name         string  `json:"name"`
			ParentID     *string `json:"parentId"`
			Role         *string `json:"role"`
			SortOrder    *int    `json:"sortOrder"`
			IsSubscribed *bool   `json:"isSubscribed"`
		}
		if err := decodeArgs(raw, &m); err != nil {
			out.NotCreated[cid] = setErr("invalidProperties", err.Error())
			continue
		}
		if m.ParentID != nil {
			out.NotCreated[cid] = setErr("invalidProperties", "folders do not nest", "parentId")
			continue
		}
		if m.Role != nil {
			out.NotCreated[cid] = setErr("invalidProperties", "only the system folders have roles", "role")
			continue
		}
		f, err := c.h.mb.CreateFolder(c.ctx, m.Name)
		if err != nil {
			se := toSetError(err)
			if se.Type == "invalidProperties" || se.Type == "forbidden" {
				se.Properties = []string{"name"}
			}
			out.NotCreated[cid] = se
			continue
		}
		id := mailboxID(f.Name)
		c.created[cid] = id
		out.Created[cid] = map[string]any{"id": id, "totalEmails": 0, "unreadEmails": 0, "totalThreads": 0,
			"unreadThreads": 0, "sortOrder": len(ms), "isSubscribed": true, "parentId": nil, "role": nil,
			"myRights": Rights{MayReadItems: true, MayAddItems: true, MayRemoveItems: true, MaySetSeen: true, MaySetKeywords: true, MayDelete: true}}
	}
	for id, raw := range a.Update {
		id = c.resolveID(id)
		var cur *Mailbox
		for i := range ms {
			if ms[i].ID == id {
				cur = &ms[i]
			}
		}
		if cur == nil {
			out.NotUpdated[id] = setErr("notFound", "no such mailbox")
			continue
		}
		var patch map[string]json.RawMessage
		json.Unmarshal(raw, &patch)
		bad := ""
		for k, v := range patch {
			switch {
			case k == "isSubscribed" && string(v) == "true":
			case k == "name" && string(v) == strconv.Quote(cur.Name):
			case k == "sortOrder" && string(v) == strconv.Itoa(cur.SortOrder):
			default:
				bad = k
			}
		}
		if bad != "" {
			out.NotUpdated[id] = setErr("forbidden", "folders cannot be renamed, nested or reordered", bad)
			continue
		}
		out.Updated[id] = nil
	}
	for _, id := range a.Destroy {
		id = c.resolveID(id)
		folder := ""
		for _, m := range ms {
			if m.ID == id {
				folder = m.folder
				if m.Role != nil || m.folder == "requests" {
					folder = "!"
				}
			}
		}
		switch folder {
		case "":
			out.NotDestroyed[id] = setErr("notFound", "no such mailbox")
			continue
		case "!":
			out.NotDestroyed[id] = setErr("forbidden", "a system folder cannot be destroyed")
			continue
		}
		if a.OnDestroyRemoveEmails {
			out.NotDestroyed[id] = setErr("forbidden", "onDestroyRemoveEmails is not supported: move or destroy the emails first")
			continue
		}
		if err := c.h.mb.DeleteFolder(c.ctx, folder); err != nil {
			if errs.CodeOf(err) == "folder_not_empty" {
				out.NotDestroyed[id] = setErr("mailboxHasEmail", "the mailbox holds emails")
			} else {
				out.NotDestroyed[id] = toSetError(err)
			}
			continue
		}
		out.Destroyed = append(out.Destroyed, id)
	}
	if ms, err = c.mailboxes(); err != nil {
		return nil, err
	}
	if out.NewState, err = c.mailboxState(ms); err != nil {
		return nil, err
	}
	return out, nil
}
