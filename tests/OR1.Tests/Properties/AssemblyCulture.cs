// Tests compare messages and formatted numbers; run them under the invariant culture whatever the machine's locale.
[assembly: SetCulture("")]
[assembly: SetUICulture("")]
