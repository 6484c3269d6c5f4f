// Command webserver stands in for the nginx and httpd of the upstream test
// images. Installed as .../nginx it writes /var/run/nginx.pid and re-executes
// itself so its command line reads "nginx: master process ..." (critest
// looks for that); installed as .../httpd it logs the word httpd. It serves
// a static page on $PORT (default 80) from $ROOT (default /usr/share/nginx/html).
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

const masterTitle = "nginx: master process"

func main() {
	name := filepath.Base(os.Args[0])
	if strings.HasPrefix(os.Args[0], masterTitle) {
		name = "nginx"
	}
	if name == "nginx" && !strings.HasPrefix(os.Args[0], masterTitle) {
		self, err := os.Executable()
		if err != nil {
			log.Fatalf("nginx: %v", err)
		}
		// Exec by path keeps the process name (comm) "nginx" for pidof.
		argv := []string{masterTitle + " " + self + " -g daemon off;"}
		log.Fatalf("nginx: exec: %v", syscall.Exec(self, argv, os.Environ()))
	}
	port := env("PORT", "80")
	root := env("ROOT", "/usr/share/nginx/html")
	if name == "nginx" {
		if err := os.MkdirAll("/var/run", 0o755); err == nil {
			_ = os.WriteFile("/var/run/nginx.pid", []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644)
		}
	}
	log.SetFlags(0)
	log.Printf("%s: serving %s on :%s", name, root, port)
	log.Fatal(http.ListenAndServe(":"+port, http.FileServer(http.Dir(root))))
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
