module github.com/pullmail/pullmail/webmail/frontend

go 1.26
