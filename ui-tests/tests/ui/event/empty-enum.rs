use eventsource::DomainEvent;

#[derive(DomainEvent, Clone)]
enum OrderEvent {}

fn main() {}
