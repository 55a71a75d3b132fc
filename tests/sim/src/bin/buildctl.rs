//! The stand-in `buildctl` (see kube_sim::standin::buildctl).
fn main() {
    kube_sim::standin::buildctl::main()
}
