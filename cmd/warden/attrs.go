package main

import "go.opentelemetry.io/otel/attribute"

func attrVersion(v string) attribute.KeyValue { return attribute.String("version", v) }

func attrResult(r string) attribute.KeyValue { return attribute.String("result", r) }
