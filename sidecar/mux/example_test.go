package mux_test

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/skiff-io/skiff/sidecar/mux"
)

func Example() {
	// In skiff each end is a mutual-TLS connection between two gateways.
	dialed, accepted := net.Pipe()
	client := mux.Client(dialed, mux.Config{})
	server := mux.Server(accepted, mux.Config{})
	defer client.Close()
	defer server.Close()

	go func() {
		st, err := server.Accept()
		if err != nil {
			return
		}
		defer st.Close()
		req, _ := io.ReadAll(st) // until the client's CloseWrite
		fmt.Fprintf(st, "hello, %s", req)
	}()

	st, err := client.Open(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()
	io.WriteString(st, "site-b")
	st.CloseWrite()
	reply, _ := io.ReadAll(st)
	fmt.Println(string(reply))
	// Output: hello, site-b
}
