//! The stand-in `docker` (see kube_sim::standin::docker).
fn main() {
    kube_sim::standin::docker::main()
}
