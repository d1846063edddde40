// The one function dipd uses from sodium-native (a CommonJS package that ships no types).
declare module 'sodium-native' {
  const sodium: {
    /** libsodium's crypto_sign_verify_detached: true iff `signature` is a valid ed25519 signature of `message` by `publicKey`. */
    crypto_sign_verify_detached(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean
  }
  export default sodium
}
