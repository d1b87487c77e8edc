//! Prints the generated CRDs as JSON documents: `cargo run -p kelos-hooks-shared --example print_crds`.
fn main() {
    for doc in kelos_hooks_shared::crd::to_json_documents() {
        println!("{doc}");
    }
}
