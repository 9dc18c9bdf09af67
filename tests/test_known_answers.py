"""Known answers: cod's cryptographic building blocks against the vectors of their standards.

Every expected value here is copied from the document named beside it, never computed by the
code under test: RFC 8439 (ChaCha20), RFC 5869 (HKDF-SHA256), RFC 8032 section 7.1 (Ed25519)
and the libp2p specifications (peer IDs). The random stream a job sees is then pinned as the
composition of the two checked steps (SPEC 4.4); the probe vectors pin its bytes for cod's seeds.
"""

from __future__ import annotations

import nacl.signing
import pytest

from cod.errors import BadSignature
from cod.identity import Identity, node_id_of, public_key_of, verify
from cod.wasm.entropy import RANDOM_INFO, RandomStream, chacha20_keystream, hkdf_sha256, random_key


def _dump(text: str) -> bytes:
    """Bytes of an RFC hex dump: lines of an offset, then up to 16 hex octets."""
    return bytes.fromhex("".join(line.split(None, 1)[1] for line in text.strip().splitlines()))


def _colons(text: str) -> bytes:
    """Bytes written as the RFC writes keys and key streams: hex octets joined by colons."""
    return bytes.fromhex("".join(text.split()).replace(":", ""))


# -- RFC 8439 ChaCha20 ---------------------------------------------------------------------

RFC8439_KEY = _colons("00:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14:15:16:17:18:19:1a:1b:1c:1d:1e:1f")

# RFC 8439 section 2.3.2: Nonce = (00:00:00:09:00:00:00:4a:00:00:00:00), Block Count = 1
RFC8439_232_BLOCK = """
  000  10 f1 e7 e4 d1 3b 59 15 50 0f dd 1f a3 20 71 c4
  016  c7 d1 f4 c7 33 c0 68 03 04 22 aa 9a c3 d4 6c 4e
  032  d2 82 64 46 07 9f aa 09 14 c2 d7 05 d9 8b 02 a2
  048  b5 12 9c d1 de 16 4e b9 cb d0 83 e8 a2 50 3c 4e
"""


def test_chacha20_block_function_rfc8439_2_3_2() -> None:
    nonce = _colons("00:00:00:09:00:00:00:4a:00:00:00:00")
    assert chacha20_keystream(RFC8439_KEY, 64, counter=1, nonce=nonce) == _dump(RFC8439_232_BLOCK)


# RFC 8439 section 2.4.2: Nonce = (00:00:00:00:00:00:00:4a:00:00:00:00), Initial Counter = 1
RFC8439_242_PLAINTEXT = """
  000  4c 61 64 69 65 73 20 61 6e 64 20 47 65 6e 74 6c
  016  65 6d 65 6e 20 6f 66 20 74 68 65 20 63 6c 61 73
  032  73 20 6f 66 20 27 39 39 3a 20 49 66 20 49 20 63
  048  6f 75 6c 64 20 6f 66 66 65 72 20 79 6f 75 20 6f
  064  6e 6c 79 20 6f 6e 65 20 74 69 70 20 66 6f 72 20
  080  74 68 65 20 66 75 74 75 72 65 2c 20 73 75 6e 73
  096  63 72 65 65 6e 20 77 6f 75 6c 64 20 62 65 20 69
  112  74 2e
"""
RFC8439_242_CIPHERTEXT = """
  000  6e 2e 35 9a 25 68 f9 80 41 ba 07 28 dd 0d 69 81
  016  e9 7e 7a ec 1d 43 60 c2 0a 27 af cc fd 9f ae 0b
  032  f9 1b 65 c5 52 47 33 ab 8f 59 3d ab cd 62 b3 57
  048  16 39 d6 24 e6 51 52 ab 8f 53 0c 35 9f 08 61 d8
  064  07 ca 0d bf 50 0d 6a 61 56 a3 8e 08 8a 22 b6 5e
  080  52 bc 51 4d 16 cc f8 06 81 8c e9 1a b7 79 37 36
  096  5a f9 0b bf 74 a3 5b e6 b4 0b 8e ed f2 78 5e 42
  112  87 4d
"""
RFC8439_242_KEYSTREAM = """
22:4f:51:f3:40:1b:d9:e1:2f:de:27:6f:b8:63:1d:ed:8c:13:1f:82:3d:2c:06
e2:7e:4f:ca:ec:9e:f3:cf:78:8a:3b:0a:a3:72:60:0a:92:b5:79:74:cd:ed:2b
93:34:79:4c:ba:40:c6:3e:34:cd:ea:21:2c:4c:f0:7d:41:b7:69:a6:74:9f:3f
63:0f:41:22:ca:fe:28:ec:4d:c4:7e:26:d4:34:6d:70:b9:8c:73:f3:e9:c5:3a
c4:0c:59:45:39:8b:6e:da:1a:83:2c:89:c1:67:ea:cd:90:1d:7e:2b:f3:63
"""


def test_chacha20_keystream_rfc8439_2_4_2() -> None:
    nonce = _colons("00:00:00:00:00:00:00:4a:00:00:00:00")
    plaintext = _dump(RFC8439_242_PLAINTEXT)
    assert plaintext.startswith(b"Ladies and Gentlemen of the class of '99")
    stream = chacha20_keystream(RFC8439_KEY, len(plaintext), counter=1, nonce=nonce)
    assert stream == _colons(RFC8439_242_KEYSTREAM)
    assert bytes(p ^ k for p, k in zip(plaintext, stream)) == _dump(RFC8439_242_CIPHERTEXT)


# RFC 8439 appendix A.1, "The ChaCha20 Block Functions", test vectors #1-#5: key, nonce,
# block counter, key stream
@pytest.mark.parametrize(
    ("key", "nonce", "counter", "keystream"),
    [
    pytest.param(
        """
  000  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
  016  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
""",
        """
  000  00 00 00 00 00 00 00 00 00 00 00 00
""",
        0,
        """
  000  76 b8 e0 ad a0 f1 3d 90 40 5d 6a e5 53 86 bd 28
  016  bd d2 19 b8 a0 8d ed 1a a8 36 ef cc 8b 77 0d c7
  032  da 41 59 7c 51 57 48 8d 77 24 e0 3f b8 d8 4a 37
  048  6a 43 b8 f4 15 18 a1 1c c3 87 b6 69 b2 ee 65 86
""",
        id="A.1-1",
    ),
    pytest.param(
        """
  000  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
  016  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
""",
        """
  000  00 00 00 00 00 00 00 00 00 00 00 00
""",
        1,
        """
  000  9f 07 e7 be 55 51 38 7a 98 ba 97 7c 73 2d 08 0d
  016  cb 0f 29 a0 48 e3 65 69 12 c6 53 3e 32 ee 7a ed
  032  29 b7 21 76 9c e6 4e 43 d5 71 33 b0 74 d8 39 d5
  048  31 ed 1f 28 51 0a fb 45 ac e1 0a 1f 4b 79 4d 6f
""",
        id="A.1-2",
    ),
    pytest.param(
        """
  000  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
  016  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01
""",
        """
  000  00 00 00 00 00 00 00 00 00 00 00 00
""",
        1,
        """
  000  3a eb 52 24 ec f8 49 92 9b 9d 82 8d b1 ce d4 dd
  016  83 20 25 e8 01 8b 81 60 b8 22 84 f3 c9 49 aa 5a
  032  8e ca 00 bb b4 a7 3b da d1 92 b5 c4 2f 73 f2 fd
  048  4e 27 36 44 c8 b3 61 25 a6 4a dd eb 00 6c 13 a0
""",
        id="A.1-3",
    ),
    pytest.param(
        """
  000  00 ff 00 00 00 00 00 00 00 00 00 00 00 00 00 00
  016  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
""",
        """
  000  00 00 00 00 00 00 00 00 00 00 00 00
""",
        2,
        """
  000  72 d5 4d fb f1 2e c4 4b 36 26 92 df 94 13 7f 32
  016  8f ea 8d a7 39 90 26 5e c1 bb be a1 ae 9a f0 ca
  032  13 b2 5a a2 6c b4 a6 48 cb 9b 9d 1b e6 5b 2c 09
  048  24 a6 6c 54 d5 45 ec 1b 73 74 f4 87 2e 99 f0 96
""",
        id="A.1-4",
    ),
    pytest.param(
        """
  000  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
  016  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
""",
        """
  000  00 00 00 00 00 00 00 00 00 00 00 02
""",
        0,
        """
  000  c2 c6 4d 37 8c d5 36 37 4a e2 04 b9 ef 93 3f cd
  016  1a 8b 22 88 b3 df a4 96 72 ab 76 5b 54 ee 27 c7
  032  8a 97 0e 0e 95 5c 14 f3 a8 8e 74 1b 97 c2 86 f7
  048  5f 8f c2 99 e8 14 83 62 fa 19 8a 39 53 1b ed 6d
""",
        id="A.1-5",
    ),
    ],
)
def test_chacha20_block_functions_rfc8439_a1(key: str, nonce: str, counter: int, keystream: str) -> None:
    assert chacha20_keystream(_dump(key), 64, counter=counter, nonce=_dump(nonce)) == _dump(keystream)


def test_chacha20_keystream_is_continuous_across_blocks() -> None:
    # the key stream at counter 1 is the stream at counter 0 with its first block dropped
    nonce = _colons("00:00:00:00:00:00:00:4a:00:00:00:00")
    assert chacha20_keystream(RFC8439_KEY, 192, nonce=nonce)[64:] == chacha20_keystream(
        RFC8439_KEY, 128, counter=1, nonce=nonce
    )


# -- RFC 5869 HKDF-SHA256 (appendix A.1-A.3) -------------------------------------------------


@pytest.mark.parametrize(
    ("ikm", "salt", "info", "length", "okm"),
    [
        pytest.param(
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "000102030405060708090a0b0c",
            "f0f1f2f3f4f5f6f7f8f9",
            42,
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
            id="A.1",
        ),
        pytest.param(
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
            "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f",
            "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
            "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
            "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
            "d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
            82,
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
            "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
            id="A.2",
        ),
        pytest.param(
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "",
            "",
            42,
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
            id="A.3",
        ),
    ],
)
def test_hkdf_sha256_rfc5869(ikm: str, salt: str, info: str, length: int, okm: str) -> None:
    out = hkdf_sha256(bytes.fromhex(ikm), salt=bytes.fromhex(salt), info=bytes.fromhex(info), length=length)
    assert out == bytes.fromhex(okm)


def test_hkdf_without_salt_is_a_salt_of_hash_length_zeros() -> None:
    # RFC 5869 section 2.2: "if not provided, [salt] is set to a string of HashLen zeros";
    # A.3 (zero-length salt) gives the same PRK, hence the same OKM, as no salt at all
    ikm = bytes.fromhex("0b" * 22)
    okm = "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    assert hkdf_sha256(ikm, salt=None, info=b"", length=42) == bytes.fromhex(okm)
    assert hkdf_sha256(ikm, salt=bytes(32), info=b"", length=42) == bytes.fromhex(okm)


# -- the random stream of a job (SPEC 4.4) = the two steps above, composed -----------------


@pytest.mark.parametrize("seed", [bytes(32), bytes(range(32)), b"\xff" * 32])
def test_random_stream_is_chacha20_under_the_hkdf_key(seed: bytes) -> None:
    key = hkdf_sha256(seed, salt=None, info=b"cod/random_get/v1", length=32)
    assert RANDOM_INFO == b"cod/random_get/v1" and random_key(seed) == key
    expected = chacha20_keystream(key, 1000, counter=0, nonce=bytes(12))
    stream = RandomStream(seed)
    # successive reads continue the one stream, whatever their sizes (a block is 64 bytes)
    got = b"".join(stream.read(n) for n in (0, 1, 63, 64, 65, 7, 800))
    assert got == expected


# -- RFC 8032 section 7.1 Ed25519 ------------------------------------------------------------

# (secret key, public key, message, signature) of TEST 1, TEST 2, TEST 3, TEST 1024, TEST SHA(abc)
RFC8032_TEST_1024_MESSAGE = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1"
    "e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a"
    "7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc10"
    "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d"
    "502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089b"
    "eccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af8969b"
    "e3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988d"
    "cda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7"
    "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac09"
    "43bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f161"
    "0e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8ca"
    "c60c905c15fc910840b94c00a0b9d0"
)
RFC8032 = [
    pytest.param(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        id="TEST 1",
    ),
    pytest.param(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        id="TEST 2",
    ),
    pytest.param(
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        id="TEST 3",
    ),
    pytest.param(
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        RFC8032_TEST_1024_MESSAGE,
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
        id="TEST 1024",
    ),
    pytest.param(
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
        id="TEST SHA(abc)",
    ),
]


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_ed25519_rfc8032_7_1(secret: str, public: str, message: str, signature: str) -> None:
    identity = Identity(nacl.signing.SigningKey(bytes.fromhex(secret)))
    msg, sig = bytes.fromhex(message), bytes.fromhex(signature)
    assert identity.public_key.hex() == public
    assert identity.sign(msg) == sig
    verify(identity.node_id, msg, sig)  # verification needs only the node ID
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    with pytest.raises(BadSignature):
        verify(identity.node_id, msg, flipped)
    with pytest.raises(BadSignature):
        verify(identity.node_id, msg + b"\x00", sig)


def test_rfc8032_test_1024_message_is_1023_bytes() -> None:
    assert len(bytes.fromhex(RFC8032_TEST_1024_MESSAGE)) == 1023


# -- libp2p peer IDs --------------------------------------------------------------------------

# libp2p/specs tls/tls.md, "Test vectors", 1. "Valid certificate authenticating an ED25519 Peer
# ID": the certificate's libp2p extension holds the Ed25519 PublicKey protobuf (08 01 12 20 ||
# key) and the key's signature over "libp2p-tls-handshake:" || the certificate's
# SubjectPublicKeyInfo; the spec gives the Peer ID it authenticates.
TLS_CERTIFICATE = (
    "308201ae30820156a0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f"
    "310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010"
    "060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d03010703"
    "4200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66"
    "a651691606d8173e55bd37e381569ea37c307a3078060a2b0601040183a25a0101046a3068042408011220a77f1d92fedb59ddda"
    "ea5a1c4abd1ac2fbde7d7b879ed364501809923d7c11b90440d90d2769db992d5e6195dbb08e706b6651e024fda6cfb8846694a4"
    "35519941cac215a8207792e42849cccc6cd8136c6e4bde92a58c5e08cfd4206eb5fe0bf909300a06082a8648ce3d040302034600"
    "3043021f50f6b6c52711a881778718238f650c9fb48943ae6ee6d28427dc6071ae55e702203625f116a7a454db9c56986c82a256"
    "82f7248ea1cb764d322ea983ed36a31b77"
)
TLS_PEER_ID = "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv"
# the parts of the certificate above, cut out by hand at their DER tags (each is checked to
# be a substring of the certificate)
TLS_PUBLIC_KEY_PROTOBUF = "08011220a77f1d92fedb59dddaea5a1c4abd1ac2fbde7d7b879ed364501809923d7c11b9"
TLS_SPKI = (
    "3059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380"
    "b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569e"
)
TLS_SIGNATURE = (
    "d90d2769db992d5e6195dbb08e706b6651e024fda6cfb8846694a435519941cac215a8207792e42849cccc6cd8136c6e4bde92a5"
    "8c5e08cfd4206eb5fe0bf909"
)


def test_peer_id_of_the_libp2p_tls_test_vector() -> None:
    for part in (TLS_PUBLIC_KEY_PROTOBUF, TLS_SPKI, TLS_SIGNATURE):
        assert part in TLS_CERTIFICATE
    key = bytes.fromhex(TLS_PUBLIC_KEY_PROTOBUF)[4:]
    assert node_id_of(key) == TLS_PEER_ID
    assert public_key_of(TLS_PEER_ID) == key
    # the key's own signature in the certificate verifies against the peer ID alone
    verify(TLS_PEER_ID, b"libp2p-tls-handshake:" + bytes.fromhex(TLS_SPKI), bytes.fromhex(TLS_SIGNATURE))


def test_libp2p_peer_ids_spec_ed25519_key_vector() -> None:
    # libp2p/specs peer-ids/peer-ids.md, "Test vectors": an Ed25519 PrivateKey protobuf
    # (Data = 32-byte seed || 32-byte public key) and the PublicKey protobuf of the same key
    private = bytes.fromhex(
        "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
    )
    public = bytes.fromhex("080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e")
    identity = Identity(nacl.signing.SigningKey(private[4:36]))
    assert identity.public_key == public[4:] == private[36:]
    # the peer ID is the identity multihash (00, length 0x24) of that protobuf, in base58btc
    assert public_key_of(identity.node_id) == public[4:]
    assert identity.node_id == node_id_of(public[4:]) and identity.node_id.startswith("12D3KooW")


def test_peer_ids_spec_example_is_an_ed25519_identity_peer_id() -> None:
    # libp2p/specs peer-ids/peer-ids.md, "String representation": an Ed25519 peer ID using the
    # identity multihash; its key round-trips
    example = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
    assert node_id_of(public_key_of(example)) == example
    # and a SHA-256 peer ID (an RSA key's) holds no Ed25519 key
    with pytest.raises(BadSignature):
        public_key_of("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
