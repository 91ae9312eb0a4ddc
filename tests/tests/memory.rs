//! The conformance suite on the in-memory stores.

eventsource_tests::conformance_tests!(eventsource_tests::fixtures::memory);
eventsource_tests::conformance_tests!(subscriptions eventsource_tests::fixtures::memory_store);
eventsource_tests::conformance_tests!(admin eventsource_tests::fixtures::memory_store);
