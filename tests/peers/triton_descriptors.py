"""Run by tests in Triton's venv: print tritonclient's own descriptors of the ``inference`` package as one JSON line.

    .venv-triton/bin/python tests/peers/triton_descriptors.py

{"messages": {full_name: {field_name: [number, type, repeated, type_name]}}, "enums": {full_name: {value: number}},
 "methods": {rpc: [input_type, output_type]}}: the ground truth our proto/inference/grpc_service.proto must match.
"""

import json

from tritonclient.grpc import model_config_pb2, service_pb2


def main() -> None:
    messages: dict = {}
    enums: dict = {}

    def walk(descriptor) -> None:
        messages[descriptor.full_name] = {
            f.name: [f.number, f.type, f.label == f.LABEL_REPEATED, f.message_type.full_name if f.message_type else
                     (f.enum_type.full_name if f.enum_type else "")] for f in descriptor.fields}
        for enum in descriptor.enum_types:
            enums[enum.full_name] = {v.name: v.number for v in enum.values}
        for nested in descriptor.nested_types:
            walk(nested)

    for module in (service_pb2, model_config_pb2):
        for descriptor in module.DESCRIPTOR.message_types_by_name.values():
            walk(descriptor)
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            enums[enum.full_name] = {v.name: v.number for v in enum.values}
    service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    methods = {m.name: [m.input_type.full_name, m.output_type.full_name] for m in service.methods}
    print(json.dumps({"messages": messages, "enums": enums, "methods": methods}))


if __name__ == "__main__":
    main()
