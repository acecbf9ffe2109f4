"""Demo data for the local stack: Avro schemas, seeded event generators, malformed frames
and a producer that writes them to Kafka in the Confluent wire format."""
