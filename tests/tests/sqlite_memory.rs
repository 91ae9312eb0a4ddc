//! The conformance suite on an in-memory SQLite database (`:memory:`, one connection).

eventsource_tests::conformance_tests!(eventsource_tests::fixtures::sqlite_memory);
eventsource_tests::conformance_tests!(sql_subscriptions eventsource_tests::fixtures::sqlite_memory_store);
eventsource_tests::conformance_tests!(admin eventsource_tests::fixtures::sqlite_memory_store);
