// Command unregistered is a plugin program that forgot sdk.Register.
package main

import "github.com/dirsync/dirsync/sdk"

func main() { sdk.Main() }
