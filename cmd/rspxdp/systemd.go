package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// sdNotify tells systemd (Type=notify units) about the daemon's state; it
// does nothing when NOTIFY_SOCKET is unset, i.e. outside such a unit.
func sdNotify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil && log != nil {
		log.Warn("systemd notification failed", "state", state, "err", err)
	}
}

// notifyLifecycle sends READY=1 once serving is closed, and STOPPING=1 when
// ctx ends (SIGTERM: the daemon leaves gracefully, which may take a while).
func notifyLifecycle(ctx context.Context, serving <-chan struct{}, log *slog.Logger) {
	go func() {
		select {
		case <-serving:
			sdNotify(log, daemon.SdNotifyReady+"\nSTATUS=serving")
		case <-ctx.Done():
			return
		}
		<-ctx.Done()
		sdNotify(log, daemon.SdNotifyStopping+"\nSTATUS=leaving")
	}()
}

// closedChan is a channel that is already closed: "serving now".
func closedChan() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// reloadingState is RELOADING=1 with the monotonic timestamp systemd asks
// for since v253, so a reload is matched to its READY=1.
func reloadingState() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return daemon.SdNotifyReloading
	}
	return fmt.Sprintf("%s\nMONOTONIC_USEC=%d", daemon.SdNotifyReloading, ts.Nano()/1000)
}
