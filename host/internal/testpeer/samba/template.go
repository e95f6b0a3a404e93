package samba

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// templateFormat changes whenever provision or writeConfig change what a
// template holds, so that old cached templates are not used.
const templateFormat = "5"

// hostName is the DC's host (and NetBIOS) name.
const hostName = "DC1"

// readerName is the sAMAccountName (and CN) of the ordinary user that
// provision creates.
const readerName = "dirsync-reader"

// passwordsFile holds the passwords of a provisioned domain; it is written
// last, so a folder that has it is a complete template.
const passwordsFile = "dirsync-passwords"

type passwords struct {
	Admin, Reader string
}

// TemplateDir is the folder where Start keeps the provisioned domain for
// this Samba version and these options.
func TemplateDir(version string, opts Options) string {
	h := sha256.Sum256([]byte(strings.Join([]string{templateFormat, version, strings.ToUpper(opts.Realm), opts.Domain}, "\x00")))
	return filepath.Join(os.TempDir(), templatePrefix+hex.EncodeToString(h[:6]))
}

// templatePrefix starts the names of template folders in os.TempDir.
const templatePrefix = "dirsync-samba-template-"

// keyFile in a template names the format and Samba version it was made by.
const keyFile = "dirsync-template"

// template returns the template folder for version and opts, provisioning
// it first when it is missing. The caller holds the lock.
func template(ctx context.Context, bins programs, version string, opts Options) (string, passwords, time.Duration, error) {
	dir := TemplateDir(version, opts)
	if pw, err := readPasswords(dir); err == nil {
		return dir, pw, 0, nil
	}
	start := time.Now()
	removeStaleTemplates(version)
	// Leftovers of a provision that was killed, and a template that lacks
	// its passwords file.
	old, _ := filepath.Glob(dir + ".tmp-*")
	for _, o := range append(old, dir) {
		_ = os.RemoveAll(o)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-")
	if err != nil {
		return "", passwords{}, 0, fmt.Errorf("samba: %w", err)
	}
	pw, err := provision(ctx, bins, tmp, opts)
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, keyFile), []byte(templateKey(version)), 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", passwords{}, 0, err
	}
	return dir, pw, time.Since(start), nil
}

func templateKey(version string) string {
	return "format " + templateFormat + ", samba " + version + "\n"
}

// removeStaleTemplates removes the templates made by another format of this
// package or another Samba version (40 MB each).
func removeStaleTemplates(version string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), templatePrefix+"*"))
	for _, d := range dirs {
		if strings.Contains(filepath.Base(d), ".tmp-") {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(d, keyFile)); err != nil || string(b) != templateKey(version) {
			_ = os.RemoveAll(d)
		}
	}
}

// programs are the Samba programs Start uses.
type programs struct {
	samba, tool string
}

// provision provisions a domain into dir (which must be empty), creates
// the reader account, turns password expiry off (a cached template may be
// older than the default 42 days), gives it a TLS certificate, starts the
// DC once and records the passwords.
func provision(ctx context.Context, bins programs, dir string, opts Options) (passwords, error) {
	opts.Config = nil // a template does not depend on them
	pw := passwords{Admin: newPassword(), Reader: newPassword()}
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, bins.tool, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Dir = dir
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(out.String())
			for _, p := range []string{pw.Admin, pw.Reader} {
				msg = strings.ReplaceAll(msg, p, "***")
			}
			if lines := strings.Split(msg, "\n"); len(lines) > 30 {
				msg = strings.Join(lines[len(lines)-30:], "\n")
			}
			return fmt.Errorf("samba: samba-tool %s in %s: %v:\n%s", strings.Join(args[:2], " "), dir, err, msg)
		}
		return nil
	}
	if err := run("domain", "provision",
		"--realm="+opts.Realm, "--domain="+opts.Domain, "--host-name="+strings.ToLower(hostName),
		"--server-role=dc", "--dns-backend=SAMBA_INTERNAL", // the DNS partitions make the referrals AD has
		"--adminpass="+pw.Admin, "--targetdir="+dir,
		"--option=interfaces = lo", "--option=bind interfaces only = yes"); err != nil {
		return pw, err
	}
	conf := filepath.Join(dir, "etc", "smb.conf")
	if err := writeConfig(conf, dir, opts); err != nil {
		return pw, err
	}
	sam := filepath.Join(dir, "private", "sam.ldb")
	if err := run("domain", "passwordsettings", "set", "--max-pwd-age=0", "-H", sam, "-s", conf); err != nil {
		return pw, err
	}
	if err := run("user", "create", readerName, pw.Reader, "--description=dirsync test reader", "-H", sam, "-s", conf); err != nil {
		return pw, err
	}
	if err := writeTLSFiles(dir, opts.Realm); err != nil {
		return pw, fmt.Errorf("samba: TLS certificate: %w", err)
	}
	// One start proves the template good.
	s := &Server{URL: "ldap://" + Addr, AdminDN: "CN=Administrator,CN=Users," + realmDN(opts.Realm), AdminPassword: pw.Admin,
		Dir: dir, LogFile: filepath.Join(dir, "samba.log"), samba: bins.samba, conf: conf, opts: opts}
	if err := s.launch(ctx); err != nil {
		return pw, fmt.Errorf("samba: first start of the provisioned domain: %w", err)
	}
	if err := s.Stop(); err != nil {
		return pw, err
	}
	// What the runs of samba-tool and samba left; a server makes its own.
	for _, p := range []string{"msg.sock", "msg.lock", "ncalrpc", "samba.pid", "samba.log", "samba.out"} {
		_ = os.RemoveAll(filepath.Join(dir, p))
	}
	data := pw.Admin + "\n" + pw.Reader + "\n"
	if err := os.WriteFile(filepath.Join(dir, passwordsFile), []byte(data), 0o600); err != nil {
		return pw, fmt.Errorf("samba: %w", err)
	}
	return pw, nil
}

func readPasswords(dir string) (passwords, error) {
	b, err := os.ReadFile(filepath.Join(dir, passwordsFile))
	if err != nil {
		return passwords{}, err
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) != 2 || lines[0] == "" || lines[1] == "" {
		return passwords{}, fmt.Errorf("samba: %s is damaged", filepath.Join(dir, passwordsFile))
	}
	return passwords{Admin: lines[0], Reader: lines[1]}, nil
}

// newPassword returns a random password that meets AD's complexity rules
// (upper and lower case, digits and a symbol).
func newPassword() string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return "Ds-" + hex.EncodeToString(b[:])
}

// writeConfig writes the smb.conf of a DC in dir: loopback only, the LDAP
// service only, simple binds over plain LDAP allowed, every path in dir.
func writeConfig(conf, dir string, opts Options) error {
	lines := []string{
		"netbios name = " + hostName,
		"workgroup = " + opts.Domain,
		"realm = " + opts.Realm,
		"server role = active directory domain controller",
		"server services = ldap",
		"interfaces = lo",
		"bind interfaces only = yes",
		"ldap server require strong auth = no",
		"private dir = " + filepath.Join(dir, "private"),
		"state directory = " + filepath.Join(dir, "state"),
		"cache directory = " + filepath.Join(dir, "cache"),
		"lock directory = " + dir,
		"pid directory = " + dir,
		"ncalrpc dir = " + filepath.Join(dir, "ncalrpc"),
		"binddns dir = " + filepath.Join(dir, "bind-dns"),
		"log file = " + filepath.Join(dir, "samba.log"),
		"logging = file",
		"max log size = 0",
		// No fsync on every LDB transaction (as Samba's own test suite
		// runs): a throwaway DC need not survive a power cut.
		"ldb:nosync = true",
		// Without a DH parameters file Samba generates them at every
		// start, which takes anything from 0.1 to 10 seconds.
		"tls dh params file = " + filepath.Join(dir, "etc", "dhparams.pem"),
	}
	lines = append(lines, opts.Config...)
	var b strings.Builder
	b.WriteString("# written by dirsync's host/internal/testpeer/samba\n[global]\n")
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			return fmt.Errorf("samba: config line %q has a line break", l)
		}
		b.WriteString("\t" + l + "\n")
	}
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		return fmt.Errorf("samba: %w", err)
	}
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("samba: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "dhparams.pem"), []byte(ffdhe2048), 0o644); err != nil {
		return fmt.Errorf("samba: %w", err)
	}
	return nil
}

// ffdhe2048 is the 2048-bit finite field Diffie-Hellman group of RFC 7919
// (`openssl pkeyparam -text` names it GROUP: ffdhe2048).
const ffdhe2048 = `-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
`

// copyTree copies the folders and regular files of src into dst, keeping
// their modes; it skips sockets and other special files.
func copyTree(src, dst string) error {
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case info.Mode().IsRegular():
			return copyFile(p, target, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("samba: copy the template: %w", err)
	}
	return nil
}

func copyFile(src, dst string, mode fs.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = io.Copy(out, in)
	return err
}
