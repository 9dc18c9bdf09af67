// What real programs do with files in /outputs (links, times, renames, RemoveAll, O_APPEND, Truncate,
// Seek, ReadDir, CreateTemp, read-only fds, Chmod, io.Copy, the inputs through a link), one line a result;
// tests/wasm/test_wasi_contrast.py runs it under cod and under wasmtime's own WASI and compares.
package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

const O = "/outputs"

func p(tag string, v ...any) { fmt.Println(append([]any{tag}, v...)...) }

func e(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func st(tag, path string, lst bool) {
	var fi os.FileInfo
	var err error
	if lst {
		fi, err = os.Lstat(path)
	} else {
		fi, err = os.Stat(path)
	}
	if err != nil {
		p(tag, "err", err)
		return
	}
	p(tag, fi.Name(), fi.Size(), fi.Mode().String(), fi.IsDir())
}

func main() {
	w := func(name, body string) { p("write", name, e(os.WriteFile(O+"/"+name, []byte(body), 0644))) }
	w("a.txt", "hello\n")
	p("symlink", e(os.Symlink("a.txt", O+"/la")))
	p("symlink-dangling", e(os.Symlink("nope", O+"/ldang")))
	p("symlink-abs", e(os.Symlink("/etc/passwd", O+"/labs")))
	p("symlink-up", e(os.Symlink("../x", O+"/lup")))
	p("symlink-exists", e(os.Symlink("a.txt", O+"/la")))
	t, err := os.Readlink(O + "/la")
	p("readlink", t, e(err))
	t, err = os.Readlink(O + "/a.txt")
	p("readlink-file", t, e(err))
	st("lstat-la", O+"/la", true)
	st("stat-la", O+"/la", false)
	st("stat-dang", O+"/ldang", false)
	st("lstat-dang", O+"/ldang", true)
	st("stat-abs", O+"/labs", false)
	st("stat-up", O+"/lup", false)
	b, err := os.ReadFile(O + "/la")
	p("read-via-link", string(b), e(err))
	b, err = os.ReadFile(O + "/labs")
	p("read-abs-link", len(b), e(err))
	p("link", e(os.Link(O+"/a.txt", O+"/hard")))
	p("link-exists", e(os.Link(O+"/a.txt", O+"/hard")))
	p("link-dir", e(os.Link(O, O+"/hdir")))
	w("hard", "changed\n")
	b, err = os.ReadFile(O + "/a.txt")
	p("read-after-hard-write", string(b), e(err))
	if fi, err := os.Stat(O + "/hard"); err == nil {
		p("hard-size", fi.Size())
	}
	// times
	mt := time.Date(2001, 2, 3, 4, 5, 6, 7000, time.UTC)
	at := time.Date(2002, 2, 3, 4, 5, 6, 0, time.UTC)
	p("chtimes", e(os.Chtimes(O+"/a.txt", at, mt)))
	if fi, err := os.Stat(O + "/a.txt"); err == nil {
		p("mtime", fi.ModTime().UTC().Format(time.RFC3339Nano))
	}
	if fi, err := os.Stat(O + "/hard"); err == nil {
		p("mtime-hard", fi.ModTime().UTC().Format(time.RFC3339Nano))
	}
	p("chtimes-link", e(os.Chtimes(O+"/la", at, time.Date(2003, 1, 1, 0, 0, 0, 0, time.UTC))))
	if fi, err := os.Stat(O + "/a.txt"); err == nil {
		p("mtime-after-link", fi.ModTime().UTC().Format(time.RFC3339Nano))
	}
	p("chtimes-missing", e(os.Chtimes(O+"/missing", at, mt)))
	p("chtimes-zero", e(os.Chtimes(O+"/a.txt", time.Time{}, time.Time{})))
	if fi, err := os.Stat(O + "/a.txt"); err == nil {
		p("mtime-zero", fi.ModTime().UTC().Format(time.RFC3339Nano))
	}
	// MkdirAll / tree
	p("mkdirall", e(os.MkdirAll(O+"/t/x/y", 0755)))
	p("mkdirall-again", e(os.MkdirAll(O+"/t/x/y", 0755)))
	p("mkdirall-over-file", e(os.MkdirAll(O+"/a.txt/z", 0755)))
	p("mkdir-exists", e(os.Mkdir(O+"/t", 0755)))
	w("t/x/f1", "1")
	w("t/x/y/f2", "22")
	p("t-link-up", e(os.Symlink("..", O+"/t/x/up")))
	p("t-link-file", e(os.Symlink("f1", O+"/t/x/lf1")))
	p("t-link-dir", e(os.Symlink("y", O+"/t/x/ly")))
	p("t-hard", e(os.Link(O+"/t/x/f1", O+"/t/hf1")))
	err = filepath.WalkDir(O+"/t", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			p("walk-err", path, err)
			return nil
		}
		p("walk", path, d.Type().String(), d.IsDir())
		return nil
	})
	p("walk-done", e(err))
	ents, err := os.ReadDir(O + "/t/x")
	p("readdir", e(err))
	for _, d := range ents {
		info, ierr := d.Info()
		if ierr != nil {
			p("ent", d.Name(), d.Type().String(), ierr)
			continue
		}
		p("ent", d.Name(), d.Type().String(), info.Size())
	}
	// reading a dir through a symlink
	ents, err = os.ReadDir(O + "/t/x/ly")
	p("readdir-via-link", len(ents), e(err))
	// Rename
	w("r1", "r1")
	w("r2", "r2")
	p("rename-file-over-file", e(os.Rename(O+"/r1", O+"/r2")))
	b, _ = os.ReadFile(O + "/r2")
	p("r2", string(b))
	p("mkdir-d1", e(os.Mkdir(O+"/d1", 0755)))
	p("mkdir-d2", e(os.Mkdir(O+"/d2", 0755)))
	p("rename-dir-over-empty-dir", e(os.Rename(O+"/d1", O+"/d2")))
	p("mkdir-d3", e(os.Mkdir(O+"/d3", 0755)))
	w("d3/in", "x")
	p("mkdir-d4", e(os.Mkdir(O+"/d4", 0755)))
	p("rename-dir-over-nonempty", e(os.Rename(O+"/d4", O+"/d3")))
	p("rename-file-over-dir", e(os.Rename(O+"/r2", O+"/d3")))
	p("rename-dir-over-file", e(os.Rename(O+"/d3", O+"/a.txt")))
	p("rename-link", e(os.Rename(O+"/la", O+"/la2")))
	t, err = os.Readlink(O + "/la2")
	p("readlink-renamed", t, e(err))
	p("symlink-lx", e(os.Symlink("a.txt", O+"/lx")))
	p("rename-file-over-link", e(os.Rename(O+"/r2", O+"/lx")))
	st("lstat-lx", O+"/lx", true)
	p("rename-link-over-file", e(os.Rename(O+"/ldang", O+"/hard")))
	st("lstat-hard", O+"/hard", true)
	p("rename-dir-into-self", e(os.Rename(O+"/d2", O+"/d2/sub")))
	p("rename-missing", e(os.Rename(O+"/missing", O+"/m2")))
	// RemoveAll of a tree with links
	p("removeall", e(os.RemoveAll(O+"/t")))
	st("after-removeall", O+"/t", true)
	b, err = os.ReadFile(O + "/a.txt")
	p("a-still", string(b), e(err))
	p("remove-link-to-dir", e(os.Symlink("d2", O+"/ld2")))
	p("remove-ld2", e(os.Remove(O+"/ld2")))
	st("d2-still", O+"/d2", false)
	p("remove-nonempty", e(os.Remove(O+"/d3")))
	p("removeall-missing", e(os.RemoveAll(O+"/nothing")))
	// O_APPEND, Truncate, Seek
	f, err := os.OpenFile(O+"/app", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0644)
	p("open-append", e(err))
	if err == nil {
		f.Write([]byte("one"))
		pos, serr := f.Seek(0, io.SeekStart)
		p("seek-append", pos, e(serr))
		f.Write([]byte("two"))
		pos, serr = f.Seek(0, io.SeekCurrent)
		p("pos-after-append", pos, e(serr))
		_, werr := f.WriteAt([]byte("X"), 0)
		p("writeat-append", e(werr))
		f.Close()
	}
	b, _ = os.ReadFile(O + "/app")
	p("app", string(b))
	p("truncate-grow", e(os.Truncate(O+"/app", 10)))
	b, _ = os.ReadFile(O + "/app")
	p("app-grown", fmt.Sprintf("%q", b))
	p("truncate-shrink", e(os.Truncate(O+"/app", 2)))
	b, _ = os.ReadFile(O + "/app")
	p("app-shrunk", string(b))
	p("truncate-neg", e(os.Truncate(O+"/app", -1)))
	p("truncate-dir", e(os.Truncate(O+"/d2", 0)))
	f, err = os.OpenFile(O+"/seek", os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0644)
	if err == nil {
		f.Write([]byte("0123456789"))
		pos, serr := f.Seek(-3, io.SeekEnd)
		p("seek-end", pos, e(serr))
		buf := make([]byte, 10)
		n, rerr := f.Read(buf)
		p("read-after-seek", string(buf[:n]), e(rerr))
		pos, serr = f.Seek(-100, io.SeekCurrent)
		p("seek-neg", pos, e(serr))
		pos, serr = f.Seek(20, io.SeekStart)
		p("seek-past", pos, e(serr))
		f.Write([]byte("Z"))
		fi, _ := f.Stat()
		p("size-after-past-write", fi.Size())
		n, rerr = f.ReadAt(buf, 5)
		p("readat", n, fmt.Sprintf("%q", buf[:n]), e(rerr))
		p("f-truncate", e(f.Truncate(4)))
		fi, _ = f.Stat()
		p("size-after-ftruncate", fi.Size())
		f.Close()
	}
	// ReadDir order
	os.Mkdir(O+"/ord", 0755)
	for _, n := range []string{"zz", "B", "a", "_", "\u00c4", "10", "9"} {
		os.WriteFile(O+"/ord/"+n, nil, 0644)
	}
	ents, err = os.ReadDir(O + "/ord")
	names := []string{}
	for _, d := range ents {
		names = append(names, d.Name())
	}
	p("readdir-order", names, e(err))
	fd, err := os.Open(O + "/ord")
	if err == nil {
		raw, rerr := fd.Readdirnames(-1)
		p("readdirnames-raw", raw, e(rerr))
		fd.Close()
	}
	// CreateTemp
	tf, err := os.CreateTemp(O, "tmp-*.txt")
	p("createtemp", e(err))
	if err == nil {
		p("createtemp-name-ok", filepath.Dir(tf.Name()) == O)
		tf.WriteString("temp")
		tf.Close()
		p("remove-temp", e(os.Remove(tf.Name())))
	}
	td, err := os.MkdirTemp(O, "dir-*")
	p("mkdirtemp", e(err))
	if err == nil {
		p("remove-tempdir", e(os.Remove(td)))
	}
	// O_RDONLY then Write
	f, err = os.OpenFile(O+"/a.txt", os.O_RDONLY, 0)
	p("open-rdonly", e(err))
	if err == nil {
		_, werr := f.Write([]byte("x"))
		p("write-rdonly", e(werr))
		p("truncate-rdonly", e(f.Truncate(0)))
		f.Close()
	}
	f, err = os.OpenFile(O+"/a.txt", os.O_WRONLY, 0)
	if err == nil {
		buf := make([]byte, 4)
		_, rerr := f.Read(buf)
		p("read-wronly", e(rerr))
		f.Close()
	}
	f, err = os.OpenFile(O+"/excl", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0644)
	p("excl1", e(err))
	if f != nil {
		f.Close()
	}
	_, err = os.OpenFile(O+"/excl", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0644)
	p("excl2", e(err))
	_, err = os.OpenFile(O+"/d2", os.O_WRONLY, 0)
	p("open-dir-wronly", e(err))
	// Chmod
	p("chmod", e(os.Chmod(O+"/a.txt", 0400)))
	st("after-chmod", O+"/a.txt", false)
	f, err = os.OpenFile(O+"/a.txt", os.O_WRONLY, 0)
	p("open-after-chmod", e(err))
	if f != nil {
		f.Close()
	}
	// io.Copy
	src, err := os.Open(O + "/seek")
	dst, err2 := os.Create(O + "/copy")
	if err == nil && err2 == nil {
		n, cerr := io.Copy(dst, src)
		p("iocopy", n, e(cerr))
		src.Close()
		dst.Close()
	}
	b, _ = os.ReadFile(O + "/copy")
	p("copy", fmt.Sprintf("%q", b))
	// inputs through a symlink made in outputs
	p("symlink-to-inputs", e(os.Symlink("../inputs/in.txt", O+"/lin")))
	b, err = os.ReadFile(O + "/lin")
	p("read-inputs-via-link", string(b), e(err))
	b, err = os.ReadFile("/inputs/in.txt")
	p("read-inputs", string(b), e(err))
	p("write-inputs", e(os.WriteFile("/inputs/new", []byte("x"), 0644)))
	p("symlink-in-inputs", e(os.Symlink("in.txt", "/inputs/l")))
	p("remove-inputs", e(os.Remove("/inputs/in.txt")))
	p("chtimes-inputs", e(os.Chtimes("/inputs/in.txt", at, mt)))
	st("stat-inputs", "/inputs/in.txt", false)
	// Getwd / relative
	wd, err := os.Getwd()
	p("getwd", wd, e(err))
	// final listing of outputs
	ents, _ = os.ReadDir(O)
	for _, d := range ents {
		fi, ierr := os.Lstat(O + "/" + d.Name())
		if ierr == nil {
			p("final", d.Name(), fi.Mode().String(), fi.Size())
		}
	}
}
