package samba

// SetProgramDirs makes findProgram search dirs instead of the usual places
// until the returned function is called.
func SetProgramDirs(dirs []string) (restore func()) {
	saved := programDirs
	programDirs = dirs
	return func() { programDirs = saved }
}
