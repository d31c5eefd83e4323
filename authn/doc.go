// Package authn decides who may open an SFTP session and with which rights.
//
// Authentication is public key first, always: a key only identifies a user,
// every decision (account state, role, source address, lockout) is taken
// after the key's signature was verified, and roles that require MFA ask for
// a TOTP code as a second, keyboard-interactive step bound to that verified
// key. There is no password authentication and keyboard-interactive alone
// never logs anyone in.
package authn
