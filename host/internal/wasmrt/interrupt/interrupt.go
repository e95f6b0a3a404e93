// Package interrupt rewrites a WebAssembly module so that its host can stop
// it mid-call, at a fraction of the cost of wazero's own way. It adds two
// globals, a countdown and a flag (exported as Global), one function, and
// at the start of every function and the head of every loop a countdown
// step:
//
//	loop …
//	  global.get $countdown  i32.const 1  i32.sub  global.set $countdown
//	  global.get $countdown  i32.eqz
//	  if
//	    call $yield
//	  end
//	  …
//
//	func $yield
//	  i32.const 0  memory.grow  drop   ;; leaves the machine code for Go
//	  global.get $flag
//	  if
//	    unreachable                    ;; the host raised the flag
//	  end
//	  i32.const Every  global.set $countdown
//
// So once every Every steps the guest leaves its machine code for the
// host's Go code (wazero runs memory.grow in Go) and checks the flag. A host
// that sets the flag to non-zero, from any goroutine, makes the running
// code trap within Every steps. Leaving for Go matters as much as the flag:
// machine code cannot be preempted, so a guest that never left it would
// hold off the host's garbage collector, whose stop-the-world would then
// stop the very goroutine that is to raise the flag. Code that runs long
// passes steps: it loops, or it calls (an endless recursion also traps on
// its own when its stack runs out).
//
// wazero offers the same with WithCloseOnContextDone, which leaves for Go
// at every loop head (but not at function starts). Go's wasm code passes a
// loop head at every call and every taken branch: for a Go guest those
// exits cost about three quarters of the running time. The step added here
// is a load, a store and a branch.
//
// Instrument decodes every instruction of the code section, to find the
// loops (and to refuse code that names the added globals, which would let
// a module keep itself from being stopped). It knows the instruction set of WebAssembly 2.0 with the
// tail-call, exception-handling (legacy and try_table), threads and
// function-reference instructions. A module with an instruction or a
// section it does not know, with no memory, with a 64-bit memory, or with a
// start section (whose function runs before the host can reach the flag),
// is refused with an error, and the host can fall back to wazero's check.
package interrupt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Global is the export name of the flag.
const Global = "dirsync.interrupt"

// Every is how many steps (function starts and loop heads) the guest passes
// between two checks of the flag.
const Every = 10000

// Section ids of the binary format.
const (
	secType     = 1
	secImport   = 2
	secFunction = 3
	secMemory   = 5
	secGlobal   = 6
	secExport   = 7
	secStart    = 8
	secCode     = 10
)

// order is the position of each known section id in a module; custom
// sections (id 0) may sit anywhere.
var order = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

type section struct {
	id      byte
	payload []byte
}

// counts are the sizes of the index spaces the added items extend.
type counts struct {
	types, funcs, globals, memories uint32
}

// Instrument returns a copy of module with the globals, the function and
// the steps added. It fails on a module that is not a valid
// WebAssembly binary as far as it reads, on what it does not know (see the
// package comment), and on a module that already exports Global.
func Instrument(module []byte) ([]byte, error) {
	secs, err := readSections(module)
	if err != nil {
		return nil, err
	}
	c, err := countEntries(secs)
	if err != nil {
		return nil, err
	}
	countdown, flag, yield := c.globals, c.globals+1, c.funcs
	step := stepCode(countdown, yield)

	yieldBody := appendYield(nil, flag, countdown)
	code := append(binary.AppendUvarint(nil, uint64(len(yieldBody))), yieldBody...) // a code entry: size, body

	globals := appendSleb([]byte{0x7f, 0x01, 0x41}, Every)        // mut i32 = Every
	globals = append(globals, 0x0b, 0x7f, 0x01, 0x41, 0x00, 0x0b) // mut i32 = 0
	export := binary.AppendUvarint(nil, uint64(len(Global)))
	export = append(export, Global...)
	export = binary.AppendUvarint(append(export, 0x03), uint64(flag))

	// The module's own code first: $yield, added below, may use the new
	// globals.
	for i := range secs {
		if secs[i].id != secCode {
			continue
		}
		p, err := instrumentCode(secs[i].payload, step, c.globals)
		if err != nil {
			return nil, fmt.Errorf("code section: %w", err)
		}
		secs[i].payload = p
	}

	for _, add := range []struct {
		id      byte
		n       uint64
		entries []byte
	}{
		{secType, 1, []byte{0x60, 0x00, 0x00}}, // () -> ()
		{secFunction, 1, binary.AppendUvarint(nil, uint64(c.types))},
		{secGlobal, 2, globals},
		{secExport, 1, export},
		{secCode, 1, code},
	} {
		if secs, err = appendEntries(secs, add.id, add.n, add.entries); err != nil {
			return nil, fmt.Errorf("%s section: %w", sectionName(add.id), err)
		}
	}

	out := make([]byte, 0, len(module)+len(module)/4)
	out = append(out, module[:8]...)
	for _, s := range secs {
		out = append(out, s.id)
		out = binary.AppendUvarint(out, uint64(len(s.payload)))
		out = append(out, s.payload...)
	}
	return out, nil
}

// readSections checks the header of module and splits it into its
// sections.
func readSections(module []byte) ([]section, error) {
	if len(module) < 8 || string(module[:4]) != "\x00asm" {
		return nil, errors.New("not a WebAssembly binary")
	}
	if v := binary.LittleEndian.Uint32(module[4:8]); v != 1 {
		return nil, fmt.Errorf("binary format version %d, want 1", v)
	}
	var secs []section
	for r := (reader{b: module, pos: 8}); !r.done(); {
		id := r.byte()
		n := r.u32()
		payload := r.bytes(int(n))
		if r.err != nil {
			return nil, fmt.Errorf("section header: %w", r.err)
		}
		if _, ok := order[id]; !ok && id != 0 {
			return nil, fmt.Errorf("unknown section id %d", id)
		}
		if id == secStart {
			// The start function runs while the module is instantiated,
			// before its host can reach the flag.
			return nil, errors.New("a start section")
		}
		secs = append(secs, section{id, payload})
	}
	return secs, nil
}

// countEntries counts the module's types, functions, globals and memories
// (imported ones included), and checks that it has a memory and does not
// export Global already.
func countEntries(secs []section) (counts, error) {
	var c counts
	for _, s := range secs {
		var err error
		var n uint32
		switch s.id {
		case secType:
			c.types, err = vecLen(s.payload)
		case secImport:
			err = countImports(s.payload, &c)
		case secFunction:
			n, err = vecLen(s.payload)
			c.funcs += n
		case secMemory:
			n, err = memories(s.payload)
			c.memories += n
		case secGlobal:
			n, err = vecLen(s.payload)
			c.globals += n
		case secExport:
			err = checkExports(s.payload)
		}
		if err != nil {
			return c, fmt.Errorf("%s section: %w", sectionName(s.id), err)
		}
	}
	if c.memories == 0 {
		return c, errors.New("the module has no memory")
	}
	return c, nil
}

// stepCode is the step added at every function start and loop head:
// count $countdown down, and call $yield when it reaches 0.
func stepCode(countdown, yield uint32) []byte {
	step := []byte{0x23} // global.get $countdown; i32.const 1; i32.sub; global.set $countdown
	step = binary.AppendUvarint(step, uint64(countdown))
	step = append(step, 0x41, 0x01, 0x6b, 0x24)
	step = binary.AppendUvarint(step, uint64(countdown))
	step = append(step, 0x23) // global.get $countdown; i32.eqz; if; call $yield; end
	step = binary.AppendUvarint(step, uint64(countdown))
	step = append(step, 0x45, 0x04, 0x40, 0x10)
	step = binary.AppendUvarint(step, uint64(yield))
	return append(step, 0x0b)
}

// appendYield appends the body of $yield (after its size).
func appendYield(b []byte, flag, countdown uint32) []byte {
	b = append(b, 0x00, 0x41, 0x00, 0x40, 0x00, 0x1a, 0x23) // no locals; i32.const 0; memory.grow 0; drop; global.get $flag
	b = binary.AppendUvarint(b, uint64(flag))
	b = append(b, 0x04, 0x40, 0x00, 0x0b, 0x41) // if unreachable end; i32.const Every
	b = appendSleb(b, Every)
	b = append(b, 0x24) // global.set $countdown; end
	b = binary.AppendUvarint(b, uint64(countdown))
	return append(b, 0x0b)
}

// appendSleb appends v as a signed LEB128.
func appendSleb(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func sectionName(id byte) string {
	switch id {
	case secType:
		return "type"
	case secImport:
		return "import"
	case secFunction:
		return "function"
	case secMemory:
		return "memory"
	case secGlobal:
		return "global"
	case secExport:
		return "export"
	case secCode:
		return "code"
	}
	return fmt.Sprintf("id %d", id)
}

// vecLen reads the element count at the start of a vector.
func vecLen(p []byte) (uint32, error) {
	r := reader{b: p}
	n := r.u32()
	return n, r.err
}

// appendEntries adds n encoded entries at the end of the vector of section
// id, which it makes (where the section order puts it) if it is missing.
func appendEntries(secs []section, id byte, n uint64, entries []byte) ([]section, error) {
	i := slices.IndexFunc(secs, func(s section) bool { return s.id == id })
	if i < 0 {
		i = slices.IndexFunc(secs, func(s section) bool { return s.id != 0 && order[s.id] > order[id] })
		if i < 0 {
			i = len(secs)
		}
		secs = slices.Insert(secs, i, section{id, []byte{0}})
	}
	r := reader{b: secs[i].payload}
	old := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	p := binary.AppendUvarint(make([]byte, 0, len(secs[i].payload)+len(entries)+4), uint64(old)+n)
	p = append(p, secs[i].payload[r.pos:]...)
	secs[i].payload = append(p, entries...)
	return secs, nil
}

// countImports counts the imported functions, globals and memories.
func countImports(p []byte, c *counts) error {
	r := reader{b: p}
	for range r.count() {
		r.name()
		r.name()
		switch kind := r.byte(); kind {
		case 0x00: // function: type index
			r.u32()
			c.funcs++
		case 0x01: // table: reference type, limits
			r.valType()
			r.limits()
		case 0x02: // memory: limits
			if r.limits()&0x04 != 0 {
				return errors.New("a 64-bit memory")
			}
			c.memories++
		case 0x03: // global: value type, mutability
			r.valType()
			r.byte()
			c.globals++
		case 0x04: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			if r.err == nil {
				return fmt.Errorf("import kind %#x at byte %d", kind, r.pos-1)
			}
		}
		if r.err != nil {
			return r.err
		}
	}
	return r.err
}

// memories counts the memories of a memory section.
func memories(p []byte) (uint32, error) {
	r := reader{b: p}
	n := r.count()
	for range n {
		if r.limits()&0x04 != 0 {
			return 0, errors.New("a 64-bit memory")
		}
	}
	return n, r.err
}

// checkExports refuses a module that already exports Global.
func checkExports(p []byte) error {
	r := reader{b: p}
	for range r.count() {
		if r.name() == Global {
			return fmt.Errorf("the module already exports %q", Global)
		}
		r.byte()
		r.u32()
		if r.err != nil {
			return r.err
		}
	}
	return r.err
}

// instrumentCode adds step at the start of every function body and after
// the block type of every loop. The bodies are the module's own, which have globals
// globals: see stepPoints.
func instrumentCode(p, step []byte, globals uint32) ([]byte, error) {
	r := reader{b: p}
	n := r.count()
	if r.err != nil {
		return nil, r.err
	}
	out := binary.AppendUvarint(make([]byte, 0, len(p)+len(p)/8), uint64(n))
	var body []byte
	for f := range n {
		size := r.u32()
		start := r.pos
		code := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("function body %d: %w", f, r.err)
		}
		points, err := stepPoints(code, globals)
		if err != nil {
			return nil, fmt.Errorf("function body %d (at byte %d of the section): %w", f, start, err)
		}
		body = body[:0]
		last := 0
		for _, at := range points {
			body = append(body, code[last:at]...)
			body = append(body, step...)
			last = at
		}
		body = append(body, code[last:]...)
		out = binary.AppendUvarint(out, uint64(len(body)))
		out = append(out, body...)
	}
	if !r.done() {
		return nil, fmt.Errorf("%d bytes after the last function body", len(p)-r.pos)
	}
	return out, nil
}

// stepPoints walks a function body (locals, then instructions up to the
// final end) and returns where a step goes: the offset of the body's first
// instruction (a recursion that never loops passes there) and of the first
// instruction of every loop. It refuses a global.get or global.set of an index beyond the
// module's globals: before Instrument such code is invalid, after it would
// reach the countdown or the flag, and a module could keep itself from
// being stopped.
func stepPoints(code []byte, globals uint32) ([]int, error) {
	r := reader{b: code}
	for range r.count() { // local declarations: count, type
		r.u32()
		r.valType()
	}
	loops := []int{r.pos}
	depth := 1 // the function's own block
	for depth > 0 {
		if r.err != nil {
			return nil, r.err
		}
		if r.done() {
			return nil, errors.New("no end")
		}
		at := r.pos
		op := r.byte()
		switch {
		case op == 0x02 || op == 0x04 || op == 0x06: // block, if, try
			r.blockType()
			depth++
		case op == 0x03: // loop
			r.blockType()
			depth++
			loops = append(loops, r.pos)
		case op == 0x1f: // try_table
			r.blockType()
			for range r.count() {
				switch kind := r.byte(); kind {
				case 0x00, 0x01: // catch, catch_ref: tag, label
					r.u32()
					r.u32()
				case 0x02, 0x03: // catch_all, catch_all_ref: label
					r.u32()
				default:
					return nil, fmt.Errorf("try_table catch kind %#x at byte %d", kind, r.pos-1)
				}
			}
			depth++
		case op == 0x0b: // end
			depth--
		case op == 0x18: // delegate: label; ends a try
			r.u32()
			depth--
		case op == 0x0e: // br_table
			for range r.count() {
				r.u32()
			}
			r.u32()
		case op == 0x1c: // select t*
			for range r.count() {
				r.valType()
			}
		case op == 0x23 || op == 0x24: // global.get, global.set
			if i := r.u32(); i >= globals && r.err == nil {
				return nil, fmt.Errorf("global index %d at byte %d is out of range (%d globals)", i, at, globals)
			}
		case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect: type, table
			r.u32()
			r.u32()
		case op >= 0x28 && op <= 0x3e: // loads and stores
			r.memArg()
		case op == 0x41: // i32.const
			r.sleb()
		case op == 0x42: // i64.const
			r.sleb()
		case op == 0x43:
			r.bytes(4)
		case op == 0x44:
			r.bytes(8)
		case op == 0xd0: // ref.null: heap type
			r.sleb()
		case op == 0xfc:
			r.prefixedFC()
		case op == 0xfd:
			r.prefixedFD()
		case op == 0xfe:
			r.prefixedFE()
		default:
			switch immediates[op] {
			case none:
			case index:
				r.u32()
			default:
				return nil, fmt.Errorf("unknown instruction %#x at byte %d", op, at)
			}
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if !r.done() {
		return nil, fmt.Errorf("%d bytes after the final end", len(code)-r.pos)
	}
	return loops, nil
}

// What follows a one-byte opcode that stepPoints does not handle itself.
const (
	unknown = iota
	none    // no immediate
	index   // one unsigned LEB128: a label, function, local, global, table, tag or memory index
)

var immediates = func() (t [256]byte) {
	for _, op := range []byte{
		0x00, 0x01, // unreachable, nop
		0x05, 0x19, 0x0a, // else, catch_all, throw_ref
		0x0f,       // return
		0x1a, 0x1b, // drop, select
		0xd1, 0xd3, // ref.is_null, ref.as_non_null
	} {
		t[op] = none
	}
	for op := 0x45; op <= 0xc4; op++ { // numeric instructions, sign extension
		t[op] = none
	}
	for _, op := range []byte{
		0x07, 0x08, 0x09, // catch tag, throw tag, rethrow label
		0x0c, 0x0d, // br, br_if
		0x10, 0x12, // call, return_call
		0x14, 0x15, // call_ref, return_call_ref: type
		0x20, 0x21, 0x22, // local.get/set/tee
		0x25, 0x26, // table.get/set
		0x3f, 0x40, // memory.size, memory.grow
		0xd2,       // ref.func
		0xd4, 0xd6, // br_on_null, br_on_non_null
	} {
		t[op] = index
	}
	return t
}()

// prefixedFC reads the rest of a 0xfc instruction: saturating truncation,
// bulk memory and table instructions.
func (r *reader) prefixedFC() {
	switch sub := r.u32(); {
	case sub <= 7: // trunc_sat
	case sub == 8 || sub == 10 || sub == 12 || sub == 14: // memory.init, memory.copy, table.init, table.copy
		r.u32()
		r.u32()
	case sub == 9 || sub == 11 || sub == 13 || sub == 15 || sub == 16 || sub == 17: // data.drop, memory.fill, elem.drop, table.grow/size/fill
		r.u32()
	default:
		r.fail(fmt.Errorf("unknown instruction 0xfc %d at byte %d", sub, r.pos))
	}
}

// prefixedFD reads the rest of a 0xfd (SIMD) instruction.
func (r *reader) prefixedFD() {
	switch sub := r.u32(); {
	case sub <= 11 || sub == 92 || sub == 93: // v128 loads and stores
		r.memArg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 21 && sub <= 34: // extract and replace lane
		r.byte()
	case sub >= 84 && sub <= 91: // load and store lane
		r.memArg()
		r.byte()
	case sub <= 275: // the rest take no immediate
	default:
		r.fail(fmt.Errorf("unknown instruction 0xfd %d at byte %d", sub, r.pos))
	}
}

// prefixedFE reads the rest of a 0xfe (threads) instruction.
func (r *reader) prefixedFE() {
	switch sub := r.u32(); {
	case sub == 3: // atomic.fence
		r.byte()
	case sub <= 2 || (sub >= 0x10 && sub <= 0x4e): // notify, waits, atomic loads, stores and rmw
		r.memArg()
	default:
		r.fail(fmt.Errorf("unknown instruction 0xfe %d at byte %d", sub, r.pos))
	}
}

// reader reads the binary format; the first error sticks and later reads
// return zero values.
type reader struct {
	b   []byte
	pos int
	err error
}

func (r *reader) done() bool { return r.err != nil || r.pos >= len(r.b) }

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.pos >= len(r.b) {
		r.fail(fmt.Errorf("unexpected end at byte %d", r.pos))
		return 0
	}
	r.pos++
	return r.b[r.pos-1]
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.pos {
		r.fail(fmt.Errorf("%d bytes wanted at byte %d, %d left", n, r.pos, len(r.b)-r.pos))
		return nil
	}
	r.pos += n
	return r.b[r.pos-n : r.pos]
}

// uleb reads an unsigned LEB128 of at most 64 bits.
func (r *reader) uleb() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.pos:])
	if n <= 0 {
		r.fail(fmt.Errorf("bad LEB128 at byte %d", r.pos))
		return 0
	}
	r.pos += n
	return v
}

func (r *reader) u32() uint32 {
	at := r.pos
	v := r.uleb()
	if v > 1<<32-1 {
		r.fail(fmt.Errorf("LEB128 at byte %d is over 32 bits", at))
		return 0
	}
	return uint32(v)
}

// sleb skips a signed LEB128 (s32, s33 or s64): at most 10 bytes, each
// but the last with its high bit set.
func (r *reader) sleb() {
	for i := 0; r.err == nil; i++ {
		if i == 10 {
			r.fail(fmt.Errorf("LEB128 at byte %d is over 64 bits", r.pos-i))
			return
		}
		if r.byte()&0x80 == 0 {
			return
		}
	}
}

// count reads the length of a vector, which cannot be more than the bytes
// left: every element takes one at least. (A bogus length would otherwise
// have a loop read nothing a few billion times.)
func (r *reader) count() uint32 {
	at := r.pos
	n := r.u32()
	if r.err == nil && int64(n) > int64(len(r.b)-r.pos) {
		r.fail(fmt.Errorf("a vector of %d elements at byte %d, with %d bytes left", n, at, len(r.b)-r.pos))
		return 0
	}
	return n
}

func (r *reader) name() string {
	return string(r.bytes(int(r.u32())))
}

// valType reads a value type: a number, vector or reference type, the
// last possibly with a heap type (function references).
func (r *reader) valType() {
	switch t := r.byte(); t {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
	case 0x63, 0x64: // (ref null ht), (ref ht)
		r.sleb()
	default:
		r.fail(fmt.Errorf("unknown value type %#x at byte %d", t, r.pos-1))
	}
}

// blockType reads the type of a block, loop, if, try or try_table.
func (r *reader) blockType() {
	if r.err != nil || r.pos >= len(r.b) {
		r.byte() // reports the end
		return
	}
	switch r.b[r.pos] {
	case 0x40: // empty
		r.pos++
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x63, 0x64:
		r.valType()
	default: // a type index, as s33
		r.sleb()
	}
}

// limits reads the limits of a memory or table and returns their flags
// (bit 0: a maximum follows; bit 1: shared; bit 2: 64-bit).
func (r *reader) limits() byte {
	flags := r.byte()
	r.uleb()
	if flags&1 != 0 {
		r.uleb()
	}
	return flags
}

// memArg reads a memory argument: alignment (bit 6 flags a memory index,
// multi-memory) and offset.
func (r *reader) memArg() {
	if r.u32()&0x40 != 0 {
		r.u32()
	}
	r.uleb()
}
