#[derive(Clone, Default)]
#[snapshot(schema_version = 1, every = 100)]
struct Order;

fn main() {}
