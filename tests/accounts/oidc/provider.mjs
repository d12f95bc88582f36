// A real OpenID Connect provider (panva's oidc-provider) on loopback, for the single
// sign-on test. Usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI
// Accounts come from the JSON file OIDC_ACCOUNTS_FILE names (login name -> claims), read at
// every sign-in so a test can change a user's claims; the development login form accepts
// any password for a known login.
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);
const accounts = () => JSON.parse(readFileSync(process.env.OIDC_ACCOUNTS_FILE, "utf8"));
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code"],
      response_types: ["code"],
    },
  ],
  scopes: ["openid", "email", "profile", "beacon"],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name"],
    beacon: ["beacon_role", "beacon_teams"],
  },
  // Scope claims go into the ID token itself, as many providers do.
  conformIdTokenClaims: false,
  cookies: { keys: ["beacon-test-only-cookie-key"] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const claims = accounts()[id];
    if (!claims) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
  // Skip the consent screen: the test client is first-party.
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope("openid email profile beacon");
    await grant.save();
    return grant;
  },
});

// Any login name the accounts know; the development form is the login page.
provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
