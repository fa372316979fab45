//! The WIT world `wattlet:edge/upload` as the edge host calls it (its `wasi:http` imports are
//! async, so are the calls).

/// The host side of `wattlet:edge/upload`, with `wattlet:survey/types`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/edge",
        world: "upload",
        imports: { default: async },
        exports: { default: async },
    });
}
