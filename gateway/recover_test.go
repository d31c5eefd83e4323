package gateway

import (
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/pkg/sftp"
)

// A handler that panics fails its request and keeps the process alive.
func TestHandlerPanicFailsOnlyThatRequest(t *testing.T) {
	h := &handlers{guard: &guard{log: hclog.NewNullLogger()}} // nil fs: any use panics
	err := h.Filecmd(sftp.NewRequest("Mkdir", "/x"))
	if !errors.Is(err, errInternal) {
		t.Fatalf("panic became %v, want errInternal", err)
	}
	if _, err := h.Filelist(sftp.NewRequest("Stat", "/x")); !errors.Is(err, errInternal) {
		t.Fatalf("Filelist panic became %v", err)
	}
}
