package metadb

import (
	"strconv"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestConcurrentUpdates: writers in parallel each see the others' commits
// (the lock serialises open-transaction-close), and a View before the file
// exists reads as empty.
func TestConcurrentUpdates(t *testing.T) {
	db, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("n")) != nil {
			t.Error("a new database has a bucket")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				err := db.Update(func(tx *bolt.Tx) error {
					b, err := tx.CreateBucketIfNotExists([]byte("n"))
					if err != nil {
						return err
					}
					n, _ := strconv.Atoi(string(b.Get([]byte("count"))))
					return b.Put([]byte("count"), []byte(strconv.Itoa(n+1)))
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	db.View(func(tx *bolt.Tx) error {
		if got := string(tx.Bucket([]byte("n")).Get([]byte("count"))); got != "80" {
			t.Errorf("count = %s, want 80: an update was lost", got)
		}
		return nil
	})
}
