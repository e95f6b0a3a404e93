;; The imports of loops.wat. Regenerate env.wasm with `make testdata`.
(module
  (func (export "twice") (param i32) (result i32) (i32.shl (local.get 0) (i32.const 1)))
  (global (export "base") i32 (i32.const 5)))
