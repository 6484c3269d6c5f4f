// Command nnp prints its effective uid. Installed setuid root, it shows
// whether no_new_privs stopped the setuid bit (as critest's nonewprivs image).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("Effective uid: %d\n", os.Geteuid())
}
