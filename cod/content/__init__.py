"""Content by CID: everything cod knows about naming bytes and trees by their hash.

- :mod:`cod.content.cid`: CIDv1 (multibase base32, multihash sha2-256, raw and dag-pb);
- :mod:`cod.content.dagpb`: dag-pb nodes, encoded as IPFS tools encode them;
- :mod:`cod.content.unixfs`: the UnixFS importer (a file or tree to its CID, as ipfs-car);
- :mod:`cod.content.car`: CARv1 reading and writing;
- :mod:`cod.content.export`: a stored tree written back out as a CAR, and its plan;
- :mod:`cod.content.blobs`: the content-addressed blob store (modules and input trees);
- :mod:`cod.content.store`: the requester's store of content it may upload or resolve;
- :mod:`cod.content.fetcher`: fetching content by CID from peers and trustless gateways.

It imports nothing from the node, the ledger, the verifier or the CLI; they import it.
"""
