package sdk

// registered is the policy this program serves, set by Register.
var registered Policy

// Register sets the policy that this program serves. A policy program calls
// it once, from an init function of its main package:
//
//	func init() { sdk.Register(mypolicy.New()) }
//
//	func main() { sdk.Main() }
//
// Register must run in init, not in main: a WebAssembly reactor module
// (GOOS=wasip1, -buildmode=c-shared) runs the init functions of its packages
// when the host instantiates it, but never runs main. There the dirsync_*
// exports serve the registered policy. On other platforms Main serves it.
//
// Register panics if p is nil or if a policy is already registered.
func Register(p Policy) {
	if p == nil {
		panic("sdk.Register: nil policy")
	}
	if registered != nil {
		panic("sdk.Register: called twice")
	}
	registered = p
}

// notRegisteredMessage explains an empty registration.
const notRegisteredMessage = "no policy registered: call sdk.Register from an init function of the plugin's main package (a WebAssembly reactor module never runs main)"
