// Command proxy; all logic is in internal/app so that only app.Main exits.
package main

import "github.com/nodesuite/nodesuite/proxy/internal/app"

func main() { app.Main() }
