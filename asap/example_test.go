package asap_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"

	"github.com/rspxdp/rspxdp/asap"
	"github.com/rspxdp/rspxdp/selector/policy"
)

// A pool element: an echo server registered in pool "echo".
func ExampleRegister() {
	ctx := context.Background()
	ln, err := net.Listen("tcp", ":7000")
	if err != nil {
		log.Fatal(err)
	}
	pe, err := asap.Register(ctx, "echo", ln,
		asap.WithRegistrars("10.0.0.1:3863", "10.0.0.2:3863"),
		asap.WithPolicy(policy.WeightedRoundRobin(3)))
	if err != nil {
		log.Fatal(err)
	}
	defer pe.Drain(ctx) // deregister, then finish the open sessions
	for {
		s, err := pe.Accept()
		if err != nil {
			return
		}
		go func() {
			defer s.Close()
			if c, _ := s.WaitCookieEcho(); c != nil {
				fmt.Printf("user failed over to us with state %q\n", c)
			}
			_, _ = io.Copy(s, s)
		}()
	}
}

// A pool user: one request, retried on the new PE after a failover.
func ExampleDial() {
	ctx := context.Background()
	conn, err := asap.Dial(ctx, "echo", asap.WithRegistrars("10.0.0.1:3863"))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	go func() {
		for ev := range conn.Failovers() {
			log.Print(ev)
		}
	}()
	r := bufio.NewReader(conn)
	for {
		_, err := fmt.Fprintln(conn, "hello")
		var line string
		if err == nil {
			line, err = r.ReadString('\n')
		}
		var fe *asap.FailoverError
		if errors.As(err, &fe) {
			r.Reset(conn) // the request was lost with the old PE: send it again
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Print(line)
		return
	}
}
