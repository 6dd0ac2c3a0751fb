package mailbox_test

import (
	"context"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/meta"
)

func authCtx(u meta.User) context.Context {
	return auth.WithPrincipal(context.Background(), auth.Principal{UserID: u.ID, Address: u.Address})
}
