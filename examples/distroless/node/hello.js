const ms = require("ms");

const major = process.versions.node.split(".")[0];
console.log(`hello from Node.js ${major} (uid ${process.getuid()}): a minute is ${ms(60000)}`);
