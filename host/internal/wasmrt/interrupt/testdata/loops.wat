;; Functions with loops of every shape, a recursion without one, and the
;; instructions around them,
;; for the tests of package interrupt. Regenerate loops.wasm with
;; `make testdata` (wat2wasm, from Debian's wabt package).
(module
  (type $binop (func (param i32 i32) (result i32)))
  (import "env" "twice" (func $twice (param i32) (result i32)))
  (import "env" "base" (global $base i32))
  (memory 1)
  (table 2 funcref)
  (elem (i32.const 0) $add $mul)
  (global $g (mut i64) (i64.const -9223372036854775808))

  (func $add (type $binop) (i32.add (local.get 0) (local.get 1)))
  (func $mul (type $binop) (i32.mul (local.get 0) (local.get 1)))

  ;; spin never returns.
  (func (export "spin")
    (loop $l (br $l)))

  ;; sum returns base + 1 + 2 + … + n, one loop iteration per term.
  (func (export "sum") (param $n i32) (result i32)
    (local $acc i32)
    (local.set $acc (global.get $base))
    (block $done
      (br_if $done (i32.eqz (local.get $n)))
      (loop $next
        (local.set $acc (i32.add (local.get $acc) (local.get $n)))
        (local.tee $n (i32.sub (local.get $n) (i32.const 1)))
        (br_if $next)))
    (local.get $acc))

  ;; grid returns rows × cols from two nested loops, through call_indirect.
  (func (export "grid") (param $rows i32) (param $cols i32) (result i32)
    (local $i i32) (local $j i32) (local $acc i32)
    (loop $row
      (local.set $j (i32.const 0))
      (loop $col
        (local.set $acc (call_indirect (type $binop) (local.get $acc) (i32.const 1) (i32.const 0)))
        (br_if $col (i32.lt_u (local.tee $j (i32.add (local.get $j) (i32.const 1))) (local.get $cols))))
      (br_if $row (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $rows))))
    (local.get $acc))

  ;; fold counts down with a loop that takes and returns a value (multi-value).
  (func (export "fold") (param $n i32) (result i32)
    (i32.const 0)
    (loop $l (param i32) (result i32)
      (i32.add (i32.const 2))
      (local.tee $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l)))

  ;; fib recurses twice per call and has no loop: fib(60) runs for ages.
  (func $fib (export "fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                     (call $fib (i32.sub (local.get $n) (i32.const 2)))))))

  ;; mixed passes many kinds of instruction, in and around loops: br_table,
  ;; constants, typed select, bulk memory, SIMD, saturating and sign-extending
  ;; conversions, references, memory.grow and a loop in dead code.
  (func (export "mixed") (param $n i32) (result i32)
    (local $k i32) (local $v v128)
    (memory.fill (i32.const 0) (i32.const 7) (i32.const 64))
    (memory.copy (i32.const 64) (i32.const 0) (i32.const 64))
    (local.set $v (v128.load offset=64 (i32.const 0)))
    (local.set $v (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 (local.get $v) (v128.const i32x4 1 2 3 4)))
    (local.set $k (i8x16.extract_lane_u 3 (local.get $v)))
    (block $b2 (block $b1 (block $b0
      (loop $l ;; counts n down to 2, 1 or 0; n must be 1 or more
        (br_table $b0 $b1 $b2 $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))))
      (local.set $k (i32.add (local.get $k) (i32.const 100))))
    (global.set $g (i64.const -1))
    (drop (ref.is_null (ref.func $add)))
    (drop (ref.null extern))
    (drop (memory.grow (i32.const 0)))
    (local.set $k (i32.add (local.get $k) (i32.trunc_sat_f64_s (f64.const 1.5e300))))
    (local.set $k (i32.add (local.get $k) (i32.extend8_s (i32.const 0xff))))
    (local.set $k (i32.add (local.get $k) (call $twice (i32.const 1))))
    (select (result i32) (local.get $k) (i32.wrap_i64 (i64.const 0x7fffffffffffffff)) (f32.lt (f32.const 1) (f32.const 2)))
    (return)
    (loop $dead (br $dead)))
)
