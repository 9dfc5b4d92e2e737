package attack

import (
	"context"
	"time"

	"github.com/rspxdp/rspxdp/asap"
)

// dump returns the handlespace of the registrar at enrpAddr.
func dump(ctx context.Context, enrpAddr string) (*asap.HandlespaceDump, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return asap.DumpHandlespace(ctx, enrpAddr, asap.WithLogger(quiet))
}

// countPEs returns how many PEs the registrar at enrpAddr lists.
func countPEs(ctx context.Context, enrpAddr string) (int, error) {
	d, err := dump(ctx, enrpAddr)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range d.Pools {
		n += len(p.PEs)
	}
	return n, nil
}
