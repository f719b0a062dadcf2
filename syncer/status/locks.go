package status

import "sync"

// keyLocks serialises work per key: posts for one commit and context (or one merge request and
// app) go out one at a time, in order, and two of them never both find no check run or note and
// both create one. Entries live while posts hold or await them.
type keyLocks[K comparable] struct {
	mu    sync.Mutex
	locks map[K]*keyLock
}

// lock waits for key's turn and returns the function that ends it.
func (k *keyLocks[K]) lock(key K) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[K]*keyLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// keyLock is the lock of one key, with the number of posts holding or awaiting it.
type keyLock struct {
	mu   sync.Mutex
	refs int
}
