"""Cross-checks backend/crypto.c's AES-256-GCM against python `cryptography`
(random keys, nonces, AAD and lengths 0..200, both directions).
Usage: python gcm_cross.py /path/to/crypto_test"""
import os, subprocess, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

exe = sys.argv[1]
for n in list(range(0, 40)) + [63, 64, 65, 127, 128, 200]:
    k, iv, aad, pt = os.urandom(32), os.urandom(12), os.urandom(n % 23), os.urandom(n)
    want = AESGCM(k).encrypt(iv, pt, aad or None)
    got = subprocess.run([exe, "enc", k.hex(), iv.hex(), aad.hex(), pt.hex()], capture_output=True, text=True).stdout.strip()
    assert got == want.hex(), (n, got, want.hex())
    back = subprocess.run([exe, "dec", k.hex(), iv.hex(), aad.hex(), want.hex()], capture_output=True, text=True).stdout.strip()
    assert back == pt.hex(), (n, back)
print("gcm cross-check against cryptography: ok")
