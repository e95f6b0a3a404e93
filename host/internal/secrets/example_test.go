package secrets_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/dirsync/dirsync/host/internal/secrets"
)

// A bind password is sealed for its domain with the key from the key file,
// kept in the store, and opened when a run binds.
func Example() {
	dir, err := os.MkdirTemp("", "secrets-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	keyFile := filepath.Join(dir, "secrets.key")
	if err := os.WriteFile(keyFile, []byte(secrets.NewKey()+"\n"), 0o600); err != nil {
		log.Fatal(err)
	}

	key, err := secrets.LoadKey(keyFile)
	if err != nil {
		log.Fatal(err)
	}
	sealed, err := secrets.Seal(key, []byte("reader-secret"), "example.com")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sealed bytes:", len(sealed))

	password, err := secrets.Open(key, sealed, "example.com")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("opened for example.com:", string(password))

	// Copied into another domain's settings, it does not open.
	_, err = secrets.Open(key, sealed, "example.org")
	fmt.Println("opened for example.org:", err)
	// Output:
	// sealed bytes: 41
	// opened for example.com: reader-secret
	// opened for example.org: secrets: cannot open the sealed password: it was sealed with another key or for another domain, or is damaged
}
