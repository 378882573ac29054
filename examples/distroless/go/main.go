package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("hello from Go on static (uid %d)\n", os.Getuid())
}
