package transport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/rspxdp/rspxdp/transport"
)

// A registrar listens for ASAP over TCP and answers one message; a PE dials
// it. Swapping transport.NewTCP for NewSCTP or NewTLS changes nothing else.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	tr, err := transport.NewTCP(transport.Config{Protocol: transport.ASAP})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := tr.Listen(ctx, "127.0.0.1:0") // production: transport.ASAP.DefaultAddr("")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()

	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			m, err := c.ReadMessage(ctx)
			if errors.Is(err, io.EOF) {
				return
			} else if err != nil {
				log.Print(err) // a *transport.FrameError says what the peer did wrong
				return
			}
			reply := []byte{m[0] + 1, 0, 0, 4} // a header-only answer
			if err := c.WriteMessage(ctx, reply); err != nil {
				return
			}
		}
	}()

	c, err := tr.Dial(ctx, ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// Type 0x01 (ASAP Registration), flags 0, length 8, then 4 bytes.
	if err := c.WriteMessage(ctx, []byte{0x01, 0x00, 0x00, 0x08, 1, 2, 3, 4}); err != nil {
		log.Fatal(err)
	}
	reply, err := c.ReadMessage(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("reply type 0x%02x, %d bytes, peer authenticated: %v\n", reply[0], len(reply), c.Peer().Authenticated())
	fmt.Println("ASAP PPID", transport.ASAP.PPID(), "port", transport.ASAP.DefaultPort(), "announces to", transport.ASAP.AnnounceGroup())
	// Output:
	// reply type 0x02, 4 bytes, peer authenticated: false
	// ASAP PPID 11 port 3863 announces to 239.0.0.50:3863
}
