package component

import (
	"sync"
)

// Readiness tells whether the component can answer requests, and if not why.
// It drives /-/ready and the gRPC health service, so Kubernetes only routes
// traffic once, say, the store gateway has loaded its blocks.
type Readiness struct {
	mu       sync.Mutex
	ready    bool
	reason   string
	onChange []func(ready bool)
}

// NewReadiness returns a Readiness that is not ready, for the given reason.
func NewReadiness(reason string) *Readiness {
	return &Readiness{reason: reason}
}

// SetReady marks the component ready.
func (r *Readiness) SetReady() { r.set(true, "") }

// SetNotReady marks the component not ready, with a reason an operator can act on.
func (r *Readiness) SetNotReady(reason string) { r.set(false, reason) }

// Status returns whether the component is ready and, if not, why.
func (r *Readiness) Status() (bool, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ready, r.reason
}

// OnChange registers f to be called with every change of readiness.
func (r *Readiness) OnChange(f func(ready bool)) {
	r.mu.Lock()
	r.onChange = append(r.onChange, f)
	ready := r.ready
	r.mu.Unlock()
	f(ready)
}

func (r *Readiness) set(ready bool, reason string) {
	r.mu.Lock()
	changed := r.ready != ready
	r.ready, r.reason = ready, reason
	fs := r.onChange
	r.mu.Unlock()
	if changed {
		for _, f := range fs {
			f(ready)
		}
	}
}
