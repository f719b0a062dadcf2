package sops

import "errors"

// combineShares recovers a secret from Shamir shares as sops splits its data key: each share
// is the secret's length of polynomial values followed by one byte, the x coordinate; the
// secret's bytes are the polynomials' values at x = 0, in GF(2^8) with the AES polynomial.
func combineShares(shares [][]byte) ([]byte, error) {
	if len(shares) < 2 {
		return nil, errors.New("fewer than two shares")
	}
	n := len(shares[0])
	if n < 2 {
		return nil, errors.New("share too short")
	}
	xs := make([]byte, len(shares))
	seen := map[byte]bool{}
	for i, s := range shares {
		if len(s) != n {
			return nil, errors.New("shares of different lengths")
		}
		x := s[n-1]
		if seen[x] {
			return nil, errors.New("duplicate share")
		}
		seen[x] = true
		xs[i] = x
	}
	secret := make([]byte, n-1)
	for b := range secret {
		var acc byte
		for i, s := range shares {
			// Lagrange basis polynomial i at 0: the product of x_j / (x_j - x_i), j ≠ i
			// (subtraction is XOR in GF(2^8)).
			basis := byte(1)
			for j := range shares {
				if j != i {
					basis = gfMul(basis, gfDiv(xs[j], xs[i]^xs[j]))
				}
			}
			acc ^= gfMul(s[b], basis)
		}
		secret[b] = acc
	}
	return secret, nil
}

// gfMul multiplies in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1.
func gfMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		carry := a & 0x80
		a <<= 1
		if carry != 0 {
			a ^= 0x1b
		}
		b >>= 1
	}
	return p
}

// gfDiv divides in GF(2^8); b is never 0 (shares have distinct x).
func gfDiv(a, b byte) byte {
	// b^254 is b's inverse (the multiplicative group has order 255).
	inv, base, e := byte(1), b, 254
	for e > 0 {
		if e&1 != 0 {
			inv = gfMul(inv, base)
		}
		base = gfMul(base, base)
		e >>= 1
	}
	return gfMul(a, inv)
}
