"""Independent checks of kiln's attestations, with the ecosystem's own
Python libraries:

  attestations.py statement FILE        in-toto Statement v1 and, for SLSA
                                        provenance, its predicate, parsed
                                        strictly into in-toto-attestation's
                                        protobufs and validated
  attestations.py dsse ENVELOPE PUBKEY  a DSSE envelope verified with
                                        securesystemslib against a PEM
                                        public key; prints the payload
"""
import json
import sys

from google.protobuf import json_format


def statement(path):
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
    from in_toto_attestation.v1.statement import Statement

    with open(path) as f:
        doc = json.load(f)
    pb = json_format.ParseDict(doc, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    if doc["predicateType"] == "https://slsa.dev/provenance/v1":
        from in_toto_attestation.predicates.provenance.v1 import provenance_pb2

        prov = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
        if not prov.build_definition.build_type:
            raise ValueError("buildType required")
        if not prov.run_details.builder.id:
            raise ValueError("builder.id required")
        for rd in prov.build_definition.resolved_dependencies:
            ResourceDescriptor.copy_from_pb(rd).validate()
    print("valid", doc["predicateType"])


def dsse(envelope_path, public_path):
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    with open(envelope_path) as f:
        envelope = Envelope.from_dict(json.load(f))
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    with open(public_path, "rb") as f:
        public = load_pem_public_key(f.read())
    keyid = next(iter(envelope.signatures))
    key = SSlibKey.from_crypto(public, keyid=keyid, scheme="ecdsa-sha2-nistp256")
    envelope.verify([key], 1)
    sys.stdout.write(envelope.payload.decode())


if __name__ == "__main__":
    if sys.argv[1] == "statement":
        statement(sys.argv[2])
    elif sys.argv[1] == "dsse":
        dsse(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: attestations.py statement FILE | dsse ENVELOPE PUBKEY")
