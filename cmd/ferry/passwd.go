package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// passwdCmd prints a bcrypt hash for the embedded broker's users. The
// password is read from standard input (one line), so it stays out of the
// shell history and the process list.
func passwdCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flags("passwd", stderr)
	cost := fs.Int("cost", bcrypt.DefaultCost, "bcrypt cost")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	return hashPassword(os.Stdin, stdout, stderr, *cost)
}

func hashPassword(in io.Reader, stdout, stderr io.Writer, cost int) int {
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintln(stderr, "ferry passwd:", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "ferry passwd: empty password; type it on standard input")
		return 2
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		fmt.Fprintln(stderr, "ferry passwd:", err)
		return 1
	}
	fmt.Fprintln(stdout, string(h))
	return 0
}
